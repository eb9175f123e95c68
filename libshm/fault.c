/* fault.c - the SIGSEGV handler that turns access faults inside shma
 * mappings into loads, and everything else into the fault it was.
 *
 * Only SEGV_ACCERR faults inside a registered mapping are ours (shma mappings
 * are reserved PROT_NONE, so their first access is an access error).  Any
 * other SIGSEGV is passed to the handler that was installed before ours, or
 * gets the default action: a real crash still crashes, with a core.
 *
 * SA_NODEFER lets a callback running inside the handler (loadblk faulting in
 * another mapping) fault again; vm_fault guards re-entry per thread.
 */
#include "virtmem.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#if defined(__aarch64__)
#include <asm/sigcontext.h>
#endif

#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#else
#define RUNNING_ON_VALGRIND 0
#endif

static pthread_mutex_t install_mutex = PTHREAD_MUTEX_INITIALIZER;
static struct sigaction prev_segv; /* written before ours is installed */

static __thread int fault_error __attribute__((tls_model("initial-exec")));

int shma_vm_fault_error(void)
{
	return fault_error;
}

/* Was the faulting access a write?  1 yes, 0 no, -1 cannot tell. */
static int fault_is_write(const ucontext_t *uc)
{
#if defined(__x86_64__)
	/* page-fault error code: bit 1 set = write access */
	return (uc->uc_mcontext.gregs[REG_ERR] & 0x2) != 0;
#elif defined(__aarch64__)
	const struct _aarch64_ctx *h = (const void *)uc->uc_mcontext.__reserved;

	for (; h->magic; h = (const void *)((const char *)h + h->size)) {
		if (h->magic == ESR_MAGIC) {
			uint64_t esr = ((const struct esr_context *)h)->esr;
			unsigned ec = (unsigned)(esr >> 26) & 0x3f;

			if (ec == 0x24 || ec == 0x25) /* data abort: WnR is bit 6 */
				return (esr >> 6) & 1;
			return -1;
		}
		if (h->size == 0)
			break;
	}
	return -1;
#else
	(void)uc;
	return -1;
#endif
}

/* Send SIGBUS to this thread, as the kernel does for an I/O error on a file
 * mapping: delivered when the handler returns, before the access re-runs.
 * Like the kernel's, it cannot be blocked or ignored away (that would turn a
 * failing load into an endless loop of faults). */
static void raise_sigbus(void *addr, ucontext_t *uc)
{
	struct sigaction cur;
	siginfo_t info;

	if (sigaction(SIGBUS, NULL, &cur) == 0 && !(cur.sa_flags & SA_SIGINFO) &&
	    cur.sa_handler == SIG_IGN) {
		cur.sa_handler = SIG_DFL;
		(void)sigaction(SIGBUS, &cur, NULL);
	}
	sigdelset(&uc->uc_sigmask, SIGBUS);
	memset(&info, 0, sizeof(info));
	info.si_signo = SIGBUS;
	info.si_code = BUS_ADRERR;
	info.si_addr = addr;
	/* valgrind cannot take a kernel-style si_code sent to itself: there the
	 * SIGBUS carries no address (SI_TKILL) */
	if (RUNNING_ON_VALGRIND) {
		if (syscall(SYS_tgkill, getpid(), syscall(SYS_gettid), SIGBUS) < 0)
			vm_fatal("a fault could not be served and SIGBUS could not be sent");
		return;
	}
	if (syscall(SYS_rt_tgsigqueueinfo, getpid(), syscall(SYS_gettid), SIGBUS, &info) < 0)
		vm_fatal("a fault could not be served and SIGBUS could not be sent");
}

/* Pass a fault that is not ours on, as if we were never installed. */
static void chain(int sig, siginfo_t *si, void *uc)
{
	if (prev_segv.sa_flags & SA_SIGINFO) {
		prev_segv.sa_sigaction(sig, si, uc);
		return;
	}
	if (prev_segv.sa_handler != SIG_DFL && prev_segv.sa_handler != SIG_IGN) {
		prev_segv.sa_handler(sig);
		return;
	}
	/* Default action (an ignored synchronous SIGSEGV is fatal too): restore
	 * it and return; the access runs again and the kernel kills us with a
	 * core. */
	signal(SIGSEGV, SIG_DFL);
}

static void on_segv(int sig, siginfo_t *si, void *ucv)
{
	ucontext_t *uc = ucv;
	int saved_errno = errno, r;
	sigset_t segv;

	/* SA_NODEFER may have been lost (a wrapping runtime such as TSan
	 * blocks all signals in handlers): a loadblk that touches another
	 * mapping must be able to fault again. */
	sigemptyset(&segv);
	sigaddset(&segv, SIGSEGV);
	pthread_sigmask(SIG_UNBLOCK, &segv, NULL);

	if (si->si_code != SEGV_ACCERR) {
		chain(sig, si, ucv);
		goto out;
	}
	r = vm_fault(si->si_addr, fault_is_write(uc));
	if (r == 1) {
		chain(sig, si, ucv);
	} else if (r == SHMA_ERECURSIVE) {
		vm_fatal("a loadblk/mapblk callback accessed the block it is loading "
			 "(SHMA_ERECURSIVE): it would wait for itself forever");
	} else if (r < 0) {
		fault_error = r;
		raise_sigbus(si->si_addr, uc);
	}
out:
	errno = saved_errno;
}

int shma_vm_install_handler(void)
{
	struct sigaction cur, sa;
	int err = 0;

	pthread_mutex_lock(&install_mutex);
	if (sigaction(SIGSEGV, NULL, &cur) < 0) {
		err = -errno;
		goto out_unlock;
	}
	if ((cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == on_segv)
		goto out_unlock; /* already ours */
	prev_segv = cur;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_segv;
	sa.sa_flags = SA_SIGINFO | SA_NODEFER | SA_RESTART;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGSEGV, &sa, NULL) < 0)
		err = -errno;
out_unlock:
	pthread_mutex_unlock(&install_mutex);
	return err;
}
