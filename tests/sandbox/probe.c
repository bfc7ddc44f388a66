/* What a hostile image tries first: each attempt prints "NAME ok" or "NAME denied ERRNO".
   Built static by the tests (gcc, aarch64-linux-gnu-gcc) and run inside the sandbox. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

static void report(const char *name, int ok) {
    if (ok) printf("%s ok\n", name);
    else printf("%s denied %s\n", name, strerrorname_np(errno) ? strerrorname_np(errno) : "?");
}

static int opens(const char *path, int flags) {
    int fd = open(path, flags);
    if (fd < 0) return 0;
    close(fd);
    return 1;
}

int main(int argc, char **argv) {
    char line[256];
    FILE *st = fopen("/proc/self/status", "r");
    while (st && fgets(line, sizeof line, st))
        if (!strncmp(line, "CapEff:", 7)) printf("capeff %s", line + 8);
    if (st) fclose(st);

    /* the "shocker" escape: a handle to the host's root file system */
    struct file_handle *h = malloc(sizeof *h + MAX_HANDLE_SZ);
    h->handle_bytes = MAX_HANDLE_SZ;
    int mount_id, ok = 0;
    if (name_to_handle_at(AT_FDCWD, "/etc/hostname", h, &mount_id, 0) == 0) {
        int fd = open_by_handle_at(AT_FDCWD, h, O_RDONLY);
        ok = fd >= 0;
        if (ok) close(fd);
    } else {
        /* any handle will do: the call itself must be refused */
        h->handle_bytes = 8; h->handle_type = 1; memset(h->f_handle, 0, 8);
        int fd = open_by_handle_at(AT_FDCWD, h, O_RDONLY);
        ok = fd >= 0 || errno == ESTALE || errno == EINVAL;
    }
    report("open_by_handle_at", ok);

    mkdir("/tmp/probe-mnt", 0755);
    report("mount_tmpfs", mount("none", "/tmp/probe-mnt", "tmpfs", 0, NULL) == 0);
    report("mount_sysfs", mount("sysfs", "/tmp/probe-mnt", "sysfs", 0, NULL) == 0);
    report("mount_binfmt", mount("binfmt_misc", "/tmp/probe-mnt", "binfmt_misc", 0, NULL) == 0);
    report("binfmt_register", opens("/proc/sys/fs/binfmt_misc/register", O_WRONLY));
    report("kmsg", opens("/dev/kmsg", O_RDONLY));
    report("core_pattern", opens("/proc/sys/kernel/core_pattern", O_WRONLY));
    report("sysrq", opens("/proc/sysrq-trigger", O_WRONLY));
    report("unshare_user", unshare(0x10000000) == 0);

    /* allowed: a non-root image may listen on port 80 (as under Docker) */
    struct sockaddr_in any = {.sin_family = AF_INET, .sin_port = htons(80)};
    int l = socket(AF_INET, SOCK_STREAM, 0);
    report("bind_80", bind(l, (struct sockaddr *)&any, sizeof any) == 0);
    close(l);

    if (argc > 1) {
        int port = atoi(argv[1]);
        for (int i = 2; i < argc; i++) {
            struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
            inet_pton(AF_INET, argv[i], &a.sin_addr);
            int s = socket(AF_INET, SOCK_STREAM, 0);
            struct timeval tv = {.tv_sec = 2};
            setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
            snprintf(line, sizeof line, "connect_%s", argv[i]);
            report(line, connect(s, (struct sockaddr *)&a, sizeof a) == 0);
            close(s);
        }
    }
    return 0;
}
