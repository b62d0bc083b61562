/* ops: libmicrohttpd serves three read-only GET endpoints from the metrics registry; anything
 * else is 404 (405 for another method). The server runs in its own thread and touches nothing
 * but the registry, under its mutex. */
#include "ops.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>

#include "log.h"

#if MHD_VERSION < 0x00097002
typedef int MHD_Result_t;
#else
typedef enum MHD_Result MHD_Result_t;
#endif

struct bs_http {
    struct MHD_Daemon *d;
    bs_metrics *m;
};

static MHD_Result_t reply(struct MHD_Connection *c, unsigned status, const char *ctype, char *body)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header(r, "Content-Type", ctype);
    MHD_Result_t rc = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return rc;
}

static MHD_Result_t handler(void *cls, struct MHD_Connection *c, const char *url,
                            const char *method, const char *version, const char *upload,
                            size_t *upload_size, void **state)
{
    (void)version;
    (void)upload;
    (void)upload_size;
    (void)state;
    bs_http *h = cls;
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        return reply(c, MHD_HTTP_METHOD_NOT_ALLOWED, "text/plain", strdup("GET only\n"));
    if (strcmp(url, "/metrics") == 0)
        return reply(c, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8",
                     bs_metrics_render(h->m));
    if (strcmp(url, "/healthz") == 0) return reply(c, MHD_HTTP_OK, "text/plain", strdup("ok\n"));
    if (strcmp(url, "/readyz") == 0) {
        char *body;
        int ready = bs_metrics_ready(h->m, &body);
        return reply(c, ready ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, "text/plain", body);
    }
    return reply(c, MHD_HTTP_NOT_FOUND, "text/plain",
                 strdup("not found: /metrics, /healthz, /readyz\n"));
}

bs_http *bs_http_start(const char *listen, bs_metrics *m, bs_err *err)
{
    char host[64];
    int port;
    const char *colon = strrchr(listen, ':');
    if (colon == NULL || (size_t)(colon - listen) >= sizeof host ||
        sscanf(colon + 1, "%d", &port) != 1 || port < 0 || port > 65535) {
        bs_err_fatal(err, BS_EINVAL, "worker.metrics_listen \"%s\": want HOST:PORT", listen);
        return NULL;
    }
    snprintf(host, sizeof host, "%.*s", (int)(colon - listen), listen);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        bs_err_fatal(err, BS_EINVAL, "worker.metrics_listen \"%s\": want an IPv4 address", listen);
        return NULL;
    }
    bs_http *h = calloc(1, sizeof *h);
    if (h == NULL) abort();
    h->m = m;
    h->d =
        MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, (uint16_t)port, NULL,
                         NULL, handler, h, MHD_OPTION_SOCK_ADDR, &sa, MHD_OPTION_CONNECTION_LIMIT,
                         16u, MHD_OPTION_CONNECTION_TIMEOUT, 10u, MHD_OPTION_END);
    if (h->d == NULL) {
        free(h);
        bs_err_fatal(err, BS_ESYS, "could not listen on %s for metrics", listen);
        return NULL;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
    bs_log(BS_LOG_INFO, "ops", "http listening on %s:%d (/metrics /healthz /readyz)", host,
           info ? (int)info->port : port);
    return h;
}

void bs_http_stop(bs_http *h)
{
    if (h == NULL) return;
    MHD_stop_daemon(h->d);
    free(h);
}

void bs_notify(const char *state)
{
    sd_notify(0, state);
}

int64_t bs_notify_watchdog_interval_us(void)
{
    uint64_t usec = 0;
    if (sd_watchdog_enabled(0, &usec) <= 0) return 0;
    return (int64_t)(usec / 2);
}
