/* util.h - small helpers shared by libshm modules (internal). */
#ifndef SHMA_UTIL_H
#define SHMA_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define PAGE_4K 4096u

/* close(2) that keeps errno and ignores -1 (one place for close's EINTR:
 * on Linux the fd is gone either way, so it is never retried). */
void util_close(int fd);

static inline bool util_is_pow2(uint64_t x)
{
	return x != 0 && (x & (x - 1)) == 0;
}

/* a * b, false on overflow. */
static inline bool util_mul_ok(uint64_t a, uint64_t b, uint64_t *out)
{
	return !__builtin_mul_overflow(a, b, out);
}

/* pread/pwrite all of len bytes at off, retrying short transfers and EINTR:
 * 0, -errno, or -EIO when the file ends first (a pread past the end). */
int util_pread_full(int fd, void *buf, size_t len, uint64_t off);
int util_pwrite_full(int fd, const void *buf, size_t len, uint64_t off);

/* This process's /proc/self/pagemap, opened once per process (-1 if it
 * cannot be).
 * Entries: 8 bytes per 4 KiB page at (address / 4096) * 8; bit 63 present,
 * bit 62 swapped, bit 61 file page or shared anonymous. */
int util_pagemap_fd(void);
#define PM_PRESENT (1ull << 63)
#define PM_SWAPPED (1ull << 62)
#define PM_FILE (1ull << 61)

/* Reserve len bytes of address space: PROT_NONE, no memory, no swap.
 * With addr != NULL, replace what is mapped there (MAP_FIXED).
 * Returns the address or NULL (errno set). */
void *util_reserve(void *addr, size_t len);

/* mmap(addr, len, prot, flags | MAP_FIXED, fd, off) and mprotect, for
 * changing how a range that other threads may be reading is mapped: under
 * ThreadSanitizer these tell it the range's old accesses are gone, where it
 * would otherwise count the change as a write racing with every reader. */
void *util_map_fixed(void *addr, size_t len, int prot, int flags, int fd, uint64_t off);
int util_protect(void *addr, size_t len, int prot);

/* Intrusive circular doubly-linked list (as in the Linux kernel). */
struct list_head {
	struct list_head *next, *prev;
};

static inline void list_init(struct list_head *h)
{
	h->next = h->prev = h;
}

static inline bool list_empty(const struct list_head *h)
{
	return h->next == h;
}

/* Insert n before h (at the tail when h is the list head). */
static inline void list_add_tail(struct list_head *n, struct list_head *h)
{
	n->prev = h->prev;
	n->next = h;
	h->prev->next = n;
	h->prev = n;
}

static inline void list_del_init(struct list_head *n)
{
	n->prev->next = n->next;
	n->next->prev = n->prev;
	list_init(n);
}

#define container_of(ptr, type, member) \
	((type *)(void *)((char *)(ptr) - offsetof(type, member)))

#endif
