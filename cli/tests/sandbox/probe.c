/* Tries the system calls a build step should not be able to make and prints, one per line,
 * `name=ok` or `name=<strerror>`. Built static by the tests and copied into a busybox image. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <netinet/in.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

static void report(const char *name, long result) {
    printf("%s=%s\n", name, result < 0 ? strerror(errno) : "ok");
}

int main(void) {
    char zeroes[256] = {0};
    report("add_key", syscall(SYS_add_key, "user", "forge-probe", "x", 1, -2 /* process keyring */));
    report("keyctl", syscall(SYS_keyctl, 1 /* join session keyring */, 0));
    report("io_uring_setup", syscall(SYS_io_uring_setup, 1, zeroes));
    report("personality", personality(READ_IMPLIES_EXEC));
    report("mount", mount("none", "/tmp", "tmpfs", 0, NULL));
    report("kexec_load", syscall(SYS_kexec_load, 0, 0, NULL, 0));
    zeroes[0] = 8; /* handle_bytes */
    report("open_by_handle_at", syscall(SYS_open_by_handle_at, AT_FDCWD, zeroes, O_RDONLY));
    report("bpf", syscall(SYS_bpf, 0 /* map create */, zeroes, 64));
    report("packet-socket", socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL)));
    report("raw-socket", socket(AF_INET, SOCK_RAW, IPPROTO_ICMP));
    report("vsock", socket(40 /* AF_VSOCK */, SOCK_STREAM, 0));
    report("tcp-socket", socket(AF_INET, SOCK_STREAM, 0));
    /* Last: a new user namespace takes every capability in the old one away. */
    report("unshare-user", unshare(CLONE_NEWUSER));
    return 0;
}
