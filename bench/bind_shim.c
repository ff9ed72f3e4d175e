/* LD_PRELOAD shim for the fleet benchmark: binds each new IPv4 TCP socket to the next of
 * AZIMDS_SOURCES loopback source addresses from AZIMDS_SOURCE_BASE (a dotted quad) before connect(),
 * so an unmodified wrk reaches the emulator from many addresses, as a fleet of VMs would. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/socket.h>

static atomic_uint next_source;

int connect(int fd, const struct sockaddr *addr, socklen_t len) {
    static int (*real_connect)(int, const struct sockaddr *, socklen_t);
    if (!real_connect)
        real_connect = (int (*)(int, const struct sockaddr *, socklen_t))dlsym(RTLD_NEXT, "connect");
    const char *count_text = getenv("AZIMDS_SOURCES");
    const char *base_text = getenv("AZIMDS_SOURCE_BASE");
    struct in_addr base;
    if (addr->sa_family == AF_INET && count_text && base_text && inet_aton(base_text, &base)) {
        unsigned count = (unsigned)atoi(count_text);
        if (count > 0) {
            struct sockaddr_in source = {0};
            source.sin_family = AF_INET;
            source.sin_addr.s_addr = htonl(ntohl(base.s_addr) + atomic_fetch_add(&next_source, 1) % count);
            bind(fd, (struct sockaddr *)&source, sizeof source);
        }
    }
    return real_connect(fd, addr, len);
}
