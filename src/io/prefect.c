/* prefect: libcurl. One easy handle per client, reused (keep-alive), so one TCP (and TLS)
 * connection serves every delivery. A 403 naming CSRF makes the client fetch a token
 * (GET {api_url}/csrf-token?client=...) and send it from then on; a token that expires is
 * fetched again the same way. */
#include "prefect.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>

#include "arena.h"
#include "ids.h"
#include "log.h"

struct bs_prefect {
    CURL *curl;
    char *base, *events_url, *csrf_url, *auth;
    char client[48];  /* our CSRF client identifier */
    char *csrf_token; /* NULL until a 403 asked for one */
    char body[2048];  /* the start of the last answer, for messages */
    size_t body_len;
    int timeout_ms;
};

static size_t on_body(char *data, size_t size, size_t n, void *ctx)
{
    bs_prefect *pf = ctx;
    size_t len = size * n, room = sizeof pf->body - 1 - pf->body_len;
    size_t take = len < room ? len : room;
    memcpy(pf->body + pf->body_len, data, take);
    pf->body_len += take;
    pf->body[pf->body_len] = '\0';
    return len;
}

bs_prefect *bs_prefect_new(const bs_prefect_conf *conf, bs_err *err)
{
    static int initialised;
    if (!initialised) { /* once, from the thread that makes the first client */
        curl_global_init(CURL_GLOBAL_DEFAULT);
        initialised = 1;
    }
    const char *u = conf->api_url;
    if (strncmp(u, "http://", 7) != 0 && strncmp(u, "https://", 8) != 0) {
        bs_err_fatal(err, BS_EINVAL, "prefect.api_url \"%s\": want an http:// or https:// URL", u);
        return NULL;
    }
    bs_prefect *pf = bs_xcalloc(1, sizeof *pf);
    pf->curl = curl_easy_init();
    if (pf->curl == NULL) {
        free(pf);
        bs_err_fatal(err, BS_ESYS, "could not make an HTTP client (libcurl)");
        return NULL;
    }
    size_t n = strlen(u);
    while (n > 0 && u[n - 1] == '/')
        n--;
    pf->base = bs_xmalloc(n + 1);
    snprintf(pf->base, n + 1, "%.*s", (int)n, u);
    pf->events_url = bs_xmalloc(n + 8);
    snprintf(pf->events_url, n + 8, "%.*s/events", (int)n, u);
    bs_uuid id;
    bs_uuid4(&id);
    snprintf(pf->client, sizeof pf->client, "bulkstate-%.8s", id.s);
    pf->csrf_url = bs_xmalloc(n + 80);
    snprintf(pf->csrf_url, n + 80, "%.*s/csrf-token?client=%s", (int)n, u, pf->client);
    if (conf->auth_string && conf->auth_string[0]) pf->auth = bs_xstrdup(conf->auth_string);
    pf->timeout_ms = conf->timeout_ms;
    return pf;
}

void bs_prefect_free(bs_prefect *pf)
{
    if (pf == NULL) return;
    curl_easy_cleanup(pf->curl);
    free(pf->base);
    free(pf->events_url);
    free(pf->csrf_url);
    free(pf->auth);
    free(pf->csrf_token);
    free(pf);
}

/* One request: GET (body NULL) or POST of a JSON body. Returns the HTTP status, or -1 with err
 * (retriable) when there was no answer. */
static long request(bs_prefect *pf, const char *url, const char *body, size_t len, bs_err *err)
{
    CURL *c = pf->curl;
    struct curl_slist *h = NULL;
    char tok[600];
    h = curl_slist_append(h, "Content-Type: application/json");
    h = curl_slist_append(h, "Accept: application/json");
    if (pf->csrf_token) {
        snprintf(tok, sizeof tok, "Prefect-Csrf-Token: %s", pf->csrf_token);
        h = curl_slist_append(h, tok);
        snprintf(tok, sizeof tok, "Prefect-Csrf-Client: %s", pf->client);
        h = curl_slist_append(h, tok);
    }
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)pf->timeout_ms);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)pf->timeout_ms);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L); /* a worker thread: no SIGALRM */
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, pf);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    if (pf->auth) {
        curl_easy_setopt(c, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        curl_easy_setopt(c, CURLOPT_USERPWD, pf->auth);
    }
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)len);
    }
    pf->body_len = 0;
    pf->body[0] = '\0';
    CURLcode rc = curl_easy_perform(c);
    curl_slist_free_all(h);
    if (rc != CURLE_OK)
        return bs_err_retriable(err, BS_ESYS, "could not reach Prefect at %s: %s", url,
                                curl_easy_strerror(rc));
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    return status;
}

/* A CSRF token for our client, from the server. */
static int fetch_csrf_token(bs_prefect *pf, bs_err *err)
{
    long status = request(pf, pf->csrf_url, NULL, 0, err);
    if (status < 0) return -1;
    json_t *j = status == 200 ? json_loads(pf->body, 0, NULL) : NULL;
    const json_t *t = json_object_get(j, "token");
    if (!json_is_string(t)) {
        json_decref(j);
        return bs_err_retriable(err, BS_ESYS, "Prefect gave no CSRF token (HTTP %ld): %.200s",
                                status, pf->body);
    }
    free(pf->csrf_token);
    pf->csrf_token = bs_xstrdup(json_string_value(t));
    json_decref(j);
    bs_log(BS_LOG_INFO, "prefect", "CSRF protection is on: token fetched for client=%s",
           pf->client);
    return 0;
}

/* A POST, once more with a fresh CSRF token when Prefect asks for one. The HTTP status, or -1
 * with err (retriable) when there was no answer. */
static long post(bs_prefect *pf, const char *url, const char *body, size_t len, bs_err *err)
{
    long status = request(pf, url, body, len, err);
    if (status == 403 && strstr(pf->body, "CSRF") != NULL) {
        if (fetch_csrf_token(pf, err) < 0) return -1;
        status = request(pf, url, body, len, err);
    }
    return status;
}

/* An answer that trying again may change: an outage, throttling, or auth the operator fixes. */
static int unexpected(bs_prefect *pf, long status, const char *url, bs_err *err)
{
    return bs_err_retriable(err, BS_ESYS, "Prefect answered HTTP %ld to %s: %.300s", status, url,
                            pf->body);
}

int bs_prefect_post_events(bs_prefect *pf, const char *json_array, size_t len, bs_err *err)
{
    long status = post(pf, pf->events_url, json_array, len, err);
    if (status < 0) return -1;
    if (status >= 200 && status < 300) return 0;
    if (status >= 500 || status == 401 || status == 403 || status == 404 || status == 408 ||
        status == 429)
        return unexpected(pf, status, pf->events_url, err);
    return bs_err_set(err, BS_EINVAL, "Prefect refused the events (HTTP %ld): %.300s", status,
                      pf->body);
}

int bs_prefect_release_lease(bs_prefect *pf, const char *lease_id, bool *gone, bs_err *err)
{
    char url[512], body[128];
    /* does Prefect still hold it? A renewal answers 410 for a lease it does not have */
    snprintf(url, sizeof url, "%s/v2/concurrency_limits/leases/%s/renew", pf->base, lease_id);
    static const char renew[] = "{\"lease_duration\": 60}";
    long status = post(pf, url, renew, sizeof renew - 1, err);
    if (status < 0) return -1;
    if (status == 410) {
        *gone = true;
        return 0;
    }
    if (status < 200 || status >= 300) return unexpected(pf, status, url, err);
    /* it does: Prefect decrements the lease's slots and revokes it */
    snprintf(url, sizeof url, "%s/v2/concurrency_limits/decrement-with-lease", pf->base);
    int n = snprintf(body, sizeof body, "{\"lease_id\": \"%s\"}", lease_id);
    status = post(pf, url, body, (size_t)n, err);
    if (status < 0) return -1;
    if (status < 200 || status >= 300) return unexpected(pf, status, url, err);
    *gone = false;
    return 0;
}

int bs_prefect_release_task_slots(bs_prefect *pf, const char *task_run_id, const char *tags_json,
                                  bs_err *err)
{
    char url[512];
    snprintf(url, sizeof url, "%s/concurrency_limits/decrement", pf->base);
    json_t *tags = json_loads(tags_json ? tags_json : "[]", 0, NULL);
    if (!json_is_array(tags)) {
        json_decref(tags);
        tags = json_array();
    }
    json_t *body = json_pack("{s:o,s:s}", "names", tags, "task_run_id", task_run_id);
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    long status = post(pf, url, text, strlen(text), err);
    free(text);
    if (status < 0) return -1;
    if (status < 200 || status >= 300) return unexpected(pf, status, url, err);
    return 0;
}
