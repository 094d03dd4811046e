/* Stand-in for libgupnp-igd: Debian bookworm's whip-client links libsoup2 while libnice's UPnP
   helper pulls in libsoup3, and libsoup aborts when both load. UPnP port mapping is never needed on
   loopback, so these entry points report "no UPnP" and libnice carries on without it. */
#include <stddef.h>
unsigned long g_object_get_type(void);
void *gupnp_simple_igd_thread_new(void) { return NULL; }
unsigned long gupnp_simple_igd_get_type(void) { return g_object_get_type(); }
void gupnp_simple_igd_add_port(void *self, const char *protocol, unsigned int external_port,
    const char *local_ip, unsigned int local_port, unsigned int lease_duration,
    const char *description) {}
void gupnp_simple_igd_remove_port_local(void *self, const char *protocol, const char *local_ip,
    unsigned int local_port) {}
