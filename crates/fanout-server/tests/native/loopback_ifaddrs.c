/* LD_PRELOAD shim for tests: getifaddrs() keeps only the loopback interface's IPv4 address usable,
   with IFF_LOOPBACK cleared, so ICE agents that skip loopback (libnice, Janus) gather 127.0.0.1 and
   nothing else. Other entries are marked down rather than unlinked: glibc frees the list as one
   block, so its shape must not change. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <string.h>
#include <sys/socket.h>

int getifaddrs(struct ifaddrs **ifap) {
    int (*real)(struct ifaddrs **) = (int (*)(struct ifaddrs **))dlsym(RTLD_NEXT, "getifaddrs");
    if (!real) return -1;
    int rc = real(ifap);
    if (rc != 0) return rc;
    for (struct ifaddrs *cur = *ifap; cur; cur = cur->ifa_next) {
        int lo4 = cur->ifa_name && strcmp(cur->ifa_name, "lo") == 0 && cur->ifa_addr &&
                  cur->ifa_addr->sa_family == AF_INET;
        if (lo4) {
            cur->ifa_flags &= ~IFF_LOOPBACK;
        } else {
            cur->ifa_flags &= ~(IFF_UP | IFF_RUNNING);
        }
    }
    return 0;
}
