/* test_tls: HTTPS on an http listener, driven by real clients (curl,
 * openssl s_client, chromium, the harness's OpenSSL load) against the real
 * binary, with a test CA and certificates made at test time by the openssl
 * CLI: protocol versions and ALPN, keep-alive, pipelining and ranges over
 * TLS, session resumption across workers, ticket key rotation, bad
 * clients, the handshake timeout, certificate reloads with a verdict. */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/harness.h"

static struct server srv;
static int port;
static char out[1 << 16];

static void setup(void)
{
    server_init(&srv);
    port = h_free_port(SOCK_STREAM);
    signal(SIGPIPE, SIG_IGN);
}

static void teardown(void) { server_cleanup(&srv); }

TestSuite(tls, .init = setup, .fini = teardown, .timeout = 150);

/* --- certificates ------------------------------------------------------- */

/* A CA (once per test) and a localhost certificate NAME.pem / NAME.key
 * signed by it, in the test's directory. */
static void make_ca(void)
{
    cr_assert_eq(h_make_test_ca(srv.dir, out, sizeof out), 0, "making the test CA: %s", out);
}

static void make_cert(const char *name)
{
    cr_assert_eq(h_make_tls_cert(srv.dir, name, "localhost", "DNS:localhost,IP:127.0.0.1", out,
                                 sizeof out), 0, "making certificate %s: %s", name, out);
}

/* The SHA-256 fingerprint of certificate file NAME.pem, or of what the
 * server sends (name NULL), into fp. */
static void fingerprint(const char *name, char *fp, size_t cap)
{
    int rc = name
        ? h_run(fp, cap, "openssl x509 -in '%s/%s.pem' -noout -fingerprint -sha256", srv.dir,
                name)
        : h_run(fp, cap, "timeout 20 openssl s_client -connect 127.0.0.1:%d </dev/null "
                "2>/dev/null | openssl x509 -noout -fingerprint -sha256", port);
    if (rc != 0)
        fp[0] = '\0';
}

static void write_conf(int workers, const char *tls_extra, const char *cert)
{
    server_write_conf(&srv, "workers = %d\ngraceful_timeout = 5\n"
                      "http { root = \"www\" access_log = \"access.log\" header_timeout = 3 }\n"
                      "listen {\n  address = \"127.0.0.1:%d\"\n"
                      "  tls {\n    # the test's certificate\n"
                      "    certificate = \"%s.pem\"\n    key = \"%s.key\"\n    %s\n  }\n}\n",
                      workers, port, cert, cert, tls_extra);
}

static void write_file(const char *name, size_t size)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/www/%s", srv.dir, name);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    for (size_t i = 0; i < size; i++)
        fputc("0123456789abcdef"[(i * 7 + i / 4096) % 16], f);
    fclose(f);
}

static void start(int workers, const char *tls_extra, char *const *env)
{
    make_ca();
    make_cert("server");
    write_file("index.html", 64);
    write_file("1k.bin", 1024);
    write_conf(workers, tls_extra, "server");
    cr_assert_eq(server_start(&srv, env), 0, "server did not start: %s",
                 h_read_file(srv.out) ? h_read_file(srv.out) : "");
}

/* `openssl s_client` with ARGS, REQUEST on its stdin, waiting for the
 * server to close; its output in out. */
static int s_client(const char *args, const char *request)
{
    return h_run(out, sizeof out,
                 "cd '%s' && printf '%s' | timeout 20 openssl s_client -connect 127.0.0.1:%d "
                 "-CAfile ca.pem -verify_return_error -servername localhost -ign_eof %s 2>&1",
                 srv.dir, request, port, args);
}

#define GET_CLOSE "GET /index.html HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n"

/* --- status ------------------------------------------------------------- */

struct tls_counts { double handshakes, resumed, failed; };

/* Every worker's "tls" object from status --json; returns how many. */
static int worker_tls(struct tls_counts *c, int cap)
{
    static char json[1 << 16];
    if (h_run(json, sizeof json, "%s status --json -c %s 2>/dev/null", h_bin(), srv.conf) != 0 ||
        !h_json_valid(json))
        return -1;
    int n = 0;
    for (const char *p = json; n < cap && (p = strstr(p, "\"tls\":{")); p++, n++) {
        c[n].handshakes = h_json_number(p, "handshakes");
        c[n].resumed = h_json_number(p, "resumed");
        c[n].failed = h_json_number(p, "failed");
    }
    return n;
}

/* The failures of one reason (enum tls_fail's name), summed over workers. */
static double failed_by(const char *reason)
{
    static char json[1 << 16];
    if (h_run(json, sizeof json, "%s status --json -c %s 2>/dev/null", h_bin(), srv.conf) != 0)
        return -1;
    double sum = 0;
    for (const char *p = json; (p = strstr(p, "\"failed_by\":{")); p++)
        sum += h_json_number(p, reason);
    return sum;
}

static double total_failed(void)
{
    struct tls_counts c[8];
    int n = worker_tls(c, 8);
    double sum = 0;
    for (int i = 0; i < n; i++)
        sum += c[i].failed;
    return n < 0 ? -1 : sum;
}

/* --- versions, ALPN, the request path ----------------------------------- */

Test(tls, curl_over_tls12_and_tls13_with_alpn)
{
    start(2, "", NULL);
    const char *versions[][2] = { { "--tlsv1.2 --tls-max 1.2", "TLSv1.2" },
                                  { "--tlsv1.3", "TLSv1.3" } };
    for (int i = 0; i < 2; i++) {
        int rc = h_run(out, sizeof out, "curl -sS -v --cacert '%s/ca.pem' %s "
                       "https://localhost:%d/index.html --resolve localhost:%d:127.0.0.1 2>&1",
                       srv.dir, versions[i][0], port, port);
        cr_assert_eq(rc, 0, "curl %s: %s", versions[i][1], out);
        char want[64];
        snprintf(want, sizeof want, "SSL connection using %s", versions[i][1]);
        cr_assert(strstr(out, want), "want %s in %s", want, out);
        cr_assert(strstr(out, "ALPN: server accepted http/1.1") ||
                  strstr(out, "ALPN, server accepted to use http/1.1"), "no ALPN: %s", out);
        cr_assert(strstr(out, "07e5c3a18f6d4b29"), "no body: %s", out);
    }
    cr_assert_eq(h_file_count(srv.log, "handshake"), 0, "a handshake failed: %s",
                 h_read_file(srv.log));
    char alog[PATH_MAX];
    snprintf(alog, sizeof alog, "%s/access.log", srv.dir);
    cr_assert(WAIT_UNTIL(h_file_count(alog, "\" 200 ") == 2, 10000), "%s", h_read_file(alog));
    cr_assert_eq(h_file_count(alog, "TLSv1"), 0, "log_cipher is off by default");
}

/* Behind a balancer: the PROXY header comes before the ClientHello; the
 * stage in front takes exactly the header, the handshake reads the rest,
 * and the log shows the header's address. A client without a header is
 * refused before any handshake. */
Test(tls, after_a_proxy_header)
{
    make_ca();
    make_cert("server");
    write_file("index.html", 64);
    server_write_conf(&srv, "workers = 1\n"
                      "http { root = \"www\" access_log = \"access.log\" }\n"
                      "listen {\n  address = \"127.0.0.1:%d\"\n"
                      "  proxy_protocol = true\n  proxy_from = {\"127.0.0.0/8\"}\n"
                      "  tls { certificate = \"server.pem\" key = \"server.key\" }\n}\n", port);
    cr_assert_eq(server_start(&srv, NULL), 0, "%s", h_read_file(srv.out));
    int rc = h_run(out, sizeof out, "curl -sS --haproxy-protocol --interface 127.0.0.3 "
                   "--cacert '%s/ca.pem' https://localhost:%d/index.html "
                   "--resolve localhost:%d:127.0.0.1 2>&1", srv.dir, port, port);
    cr_assert_eq(rc, 0, "curl with a PROXY header: %s", out);
    cr_assert(strstr(out, "07e5c3a18f6d4b29"), "no body: %s", out);
    rc = h_run(out, sizeof out, "curl -sS --cacert '%s/ca.pem' https://localhost:%d/ "
               "--resolve localhost:%d:127.0.0.1 2>&1", srv.dir, port, port);
    cr_assert_neq(rc, 0, "no PROXY header, yet answered: %s", out);
    char alog[PATH_MAX];
    snprintf(alog, sizeof alog, "%s/access.log", srv.dir);
    cr_assert(WAIT_UNTIL(h_file_count(alog, "127.0.0.3 ") == 1, 10000), "%s",
              h_read_file(alog));
    cr_assert_eq(h_file_count(alog, "\n"), 1, "one request logged: %s", h_read_file(alog));
}

Test(tls, s_client_versions_and_nothing_older)
{
    start(1, "", NULL);
    cr_assert_eq(s_client("-tls1_2 -alpn http/1.1", GET_CLOSE), 0, "%s", out);
    cr_assert(strstr(out, "Protocol  : TLSv1.2") || strstr(out, "TLSv1.2, Cipher"), "%s", out);
    cr_assert(strstr(out, "ALPN protocol: http/1.1"), "%s", out);
    cr_assert(strstr(out, "HTTP/1.1 200 OK"), "%s", out);
    cr_assert_eq(s_client("-tls1_3", GET_CLOSE), 0, "%s", out);
    cr_assert(strstr(out, "TLSv1.3, Cipher"), "%s", out);
    cr_assert(strstr(out, "HTTP/1.1 200 OK"), "%s", out);
    /* TLS 1.1 and 1.0 are refused (the client may refuse first: either way
     * no session). */
    cr_assert_neq(s_client("-tls1_1 -cipher DEFAULT@SECLEVEL=0", GET_CLOSE), 0, "%s", out);
    cr_assert_null(strstr(out, "HTTP/1.1 200"), "%s", out);
}

Test(tls, protocols_tls13_only_refuses_tls12)
{
    start(1, "protocols = {\"TLSv1.3\"}", NULL);
    cr_assert_neq(s_client("-tls1_2", GET_CLOSE), 0, "%s", out);
    cr_assert_null(strstr(out, "HTTP/1.1 200"), "%s", out);
    cr_assert_eq(s_client("-tls1_3", GET_CLOSE), 0, "%s", out);
    cr_assert(strstr(out, "HTTP/1.1 200 OK"), "%s", out);
}

/* Keep-alive, pipelining (three requests in one write), a range and a
 * large file: as over plain HTTP, and one access log line each, ending
 * with protocol and cipher (log_cipher). */
Test(tls, keepalive_pipelining_ranges_large_file)
{
    start(1, "log_cipher = true", NULL);
    write_file("big.bin", 3 * 1024 * 1024 + 123);
    cr_assert_eq(s_client("-quiet",
                          "GET /index.html HTTP/1.1\\r\\nHost: localhost\\r\\n\\r\\n"
                          "GET /1k.bin HTTP/1.1\\r\\nHost: localhost\\r\\nRange: bytes=10-19\\r\\n\\r\\n"
                          "GET /index.html HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n"),
                 0, "%s", out);
    const char *a = strstr(out, "HTTP/1.1 200 OK"), *b = a ? strstr(a, "HTTP/1.1 206") : NULL;
    cr_assert(a && b && strstr(b, "HTTP/1.1 200 OK"), "three answers in order: %s", out);
    cr_assert(strstr(b, "Content-Range: bytes 10-19/1024"), "%s", out);
    int rc = h_run(out, sizeof out, "cd '%1$s' && curl -sS --cacert ca.pem --resolve "
                   "localhost:%2$d:127.0.0.1 https://localhost:%2$d/big.bin "
                   "https://localhost:%2$d/big.bin -o got1 -o got2 && cmp got1 www/big.bin && "
                   "cmp got2 www/big.bin", srv.dir, port);
    cr_assert_eq(rc, 0, "large file over TLS, twice on one connection: %s", out);
    char alog[PATH_MAX];
    snprintf(alog, sizeof alog, "%s/access.log", srv.dir);
    cr_assert(WAIT_UNTIL(h_file_count(alog, "\" 20") == 5, 10000), "%s", h_read_file(alog));
    cr_assert_eq(h_file_count(alog, "\"GET /1k.bin HTTP/1.1\" 206 10 "), 1, "%s",
                 h_read_file(alog));
    cr_assert_eq(h_file_count(alog, "\" TLSv1.3 TLS_AES_256_GCM_SHA384\n"), 5, "%s",
                 h_read_file(alog));
}

/* 50 requests, each in its own TLS record, sent before any answer is read:
 * the server reads them ahead in a few reads and OpenSSL holds the rest,
 * which epoll never announces; all 50 are answered. */
Test(tls, pipelined_records_held_by_openssl_are_served)
{
    start(1, "", NULL);
    char ca[PATH_MAX];
    snprintf(ca, sizeof ca, "%s/ca.pem", srv.dir);
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    cr_assert_not_null(ctx);
    cr_assert_eq(SSL_CTX_load_verify_locations(ctx, ca, NULL), 1);
    int fd;
    SSL *ssl = h_tls_connect(ctx, port, &fd);
    cr_assert_not_null(ssl);
    static const char req[] = "GET /index.html HTTP/1.1\r\nHost: localhost\r\n\r\n";
    for (int i = 0; i < 50; i++)
        cr_assert_eq(SSL_write(ssl, req, sizeof req - 1), (int)sizeof req - 1);
    static char buf[1 << 16];
    size_t len = 0;
    int answers = 0;
    while (answers < 50 && len < sizeof buf - 1) {
        int n = SSL_read(ssl, buf + len, (int)(sizeof buf - 1 - len));
        if (n <= 0)
            break;          /* 10 s of silence: the socket's timeout */
        len += (size_t)n;
        buf[len] = '\0';
        answers = 0;
        for (const char *p = buf; (p = strstr(p, "HTTP/1.1 200 OK")); p++)
            answers++;
    }
    cr_assert_eq(answers, 50, "%d of 50 pipelined requests answered", answers);
    SSL_free(ssl);
    close(fd);
    SSL_CTX_free(ctx);
}

/* --- resumption --------------------------------------------------------- */

/* A session saved from one worker resumes, on both workers, with the
 * tickets of the pool's keys: the worker that made it shows a full
 * handshake, the other one resumptions. */
static void resume_across_workers(const char *version)
{
    char args[256];
    snprintf(args, sizeof args, "%s -sess_out sess.pem", version);
    cr_assert_eq(s_client(args, GET_CLOSE), 0, "%s", out);
    cr_assert(strstr(out, "\nNew, "), "%s", out);
    struct tls_counts c[2];
    cr_assert(WAIT_UNTIL(worker_tls(c, 2) == 2 && c[0].handshakes + c[1].handshakes >= 1, 5000));
    int origin = c[0].handshakes - c[0].resumed >= 1 ? 0 : 1, other = 1 - origin;
    snprintf(args, sizeof args, "%s -sess_in sess.pem", version);
    int tries = 0;
    for (; tries < 200; tries++) {
        cr_assert_eq(s_client(args, GET_CLOSE), 0, "%s", out);
        cr_assert(strstr(out, "\nReused, "), "try %d not resumed: %s", tries, out);
        cr_assert(strstr(out, "HTTP/1.1 200 OK"), "%s", out);
        if (tries >= 3 && worker_tls(c, 2) == 2 && c[other].resumed >= 1)
            break;
    }
    cr_log_info("%s: resumed on the other worker after %d connections", version, tries + 1);
    cr_assert(WAIT_UNTIL(worker_tls(c, 2) == 2 && c[other].resumed >= 1, 5000),
              "worker %d made the session, worker %d never resumed one", origin, other);
    cr_assert_eq(c[origin].handshakes - c[origin].resumed + c[other].handshakes -
                 c[other].resumed, 1, "one full handshake in all");
}

Test(tls, session_resumes_on_every_worker_tls13)
{
    start(2, "", NULL);
    resume_across_workers("-tls1_3");
}

Test(tls, session_resumes_on_every_worker_tls12)
{
    start(2, "", NULL);
    resume_across_workers("-tls1_2");
}

/* A TLS 1.3 client uses a ticket once (RFC 8446, C.4: browsers do; so does
 * OpenSSL's client when it reconnects with SSL_clear, as wrk does). So a
 * resumed TLS 1.3 connection gets a fresh ticket, or that client's next
 * connection is a full handshake again: every other one was, before. */
Test(tls, tls13_resumption_hands_out_a_fresh_ticket)
{
    start(2, "", NULL);
    cr_assert_eq(s_client("-tls1_3 -sess_out s0.pem", GET_CLOSE), 0, "%s", out);
    cr_assert(strstr(out, "\nNew, "), "%s", out);
    for (int i = 0; i < 4; i++) {
        char args[128];
        snprintf(args, sizeof args, "-tls1_3 -msg -sess_in s%d.pem -sess_out s%d.pem", i, i + 1);
        cr_assert_eq(s_client(args, GET_CLOSE), 0, "%s", out);
        cr_assert(strstr(out, "\nReused, "), "connection %d not resumed: %s", i + 2, out);
        cr_assert(strstr(out, "NewSessionTicket"), "resumed connection %d got no new ticket: %s",
                  i + 2, out);
    }
}

/* Keys rotate every 2 s here: a ticket still opens for at least one
 * period (the previous key), and not forever. */
Test(tls, ticket_keys_rotate)
{
    char *env[] = { "PREFORKD_TLS_TICKET_ROTATE=2", NULL };
    start(2, "", env);
    cr_assert_eq(s_client("-tls1_2 -sess_out sess.pem", GET_CLOSE), 0, "%s", out);
    int64_t saved = h_now_ms();
    cr_assert_eq(s_client("-tls1_2 -sess_in sess.pem", GET_CLOSE), 0, "%s", out);
    int64_t first = h_now_ms();
    /* Resumed at once, unless the machine froze for a whole period. */
    if (first - saved < 2000)
        cr_assert(strstr(out, "\nReused, "), "%s", out);
    bool reused = true;
    int64_t end = h_now_ms() + 60000;
    while (reused && h_now_ms() < end) {
        cr_assert_eq(s_client("-tls1_2 -sess_in sess.pem", GET_CLOSE), 0, "%s", out);
        reused = strstr(out, "\nReused, ") != NULL;
        if (reused)
            h_sleep_ms(200);
    }
    cr_assert_not(reused, "a 2 s ticket key still opens the ticket after 60 s");
    cr_assert_geq(h_now_ms() - saved, 2000, "the ticket stopped opening within one period");
    cr_assert_eq(h_file_count(srv.log, "tls keys"), 0, "keys must not be logged");
}

/* --- bad clients -------------------------------------------------------- */

/* Plain HTTP and garbage on the TLS port fail their handshakes; the
 * worker lives on and a client under load meanwhile loses nothing. */
Test(tls, plain_http_and_garbage_hellos_fail_alone)
{
    start(1, "", NULL);
    pid_t before[4];
    cr_assert(WAIT_UNTIL(h_children(&srv, srv.pid, before, 4) == 1, 5000));
    char ca[PATH_MAX];
    snprintf(ca, sizeof ca, "%s/ca.pem", srv.dir);
    struct h_load l;
    h_load_start_tls(&l, 1, port, ca, "GET /1k.bin HTTP/1.1\r\nHost: localhost\r\n\r\n", "07e5");
    const char *bad[] = {
        "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
        "\x16\x03\x01\xff\xff garbage after a record header claiming 65535 bytes",
        "\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00",      /* a ClientHello of 1 byte */
        "\x15\x03\x03\x00\x02\x02\x28",                  /* an alert first */
        "\x80\x80\x01\x03\x01\x00\x57\x00\x00",          /* SSLv2 hello */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int fd = h_tcp_connect(port);
        cr_assert_geq(fd, 0);
        size_t len = i == 2 ? 10 : i == 3 ? 7 : i == 4 ? 9 : strlen(bad[i]);
        cr_assert_eq(h_write_full(fd, bad[i], len), 0);
        char buf[512];
        size_t got = 0;
        while (h_read_some(fd, buf + got, sizeof buf - 1 - got, 10000, &got) == 0 &&
               got < sizeof buf - 1)
            ;
        buf[got] = '\0';
        cr_assert_null(strstr(buf, "HTTP/1.1 200"), "bad client %zu got an answer", i);
        close(fd);
    }
    cr_assert(WAIT_UNTIL(total_failed() >= 5, 10000), "failures counted: %.0f", total_failed());
    /* The SSLv2 hello claims 128 bytes: OpenSSL waits for them until
     * header_timeout (timeout); the other four are protocol errors. */
    cr_assert(WAIT_UNTIL(failed_by("protocol") >= 4 && failed_by("timeout") >= 1, 10000),
              "protocol %.0f, timeout %.0f", failed_by("protocol"), failed_by("timeout"));
    long ok = l.ok;
    cr_assert(WAIT_UNTIL(l.ok > ok + 10, 10000), "the load stopped");
    h_load_stop(&l);
    cr_assert_eq(l.failed, 0, "%ld failed; last: %s", (long)l.failed, l.last_failure);
    pid_t after[4];
    cr_assert_eq(h_children(&srv, srv.pid, after, 4), 1);
    cr_assert_eq(after[0], before[0], "the worker was replaced");
    cr_assert(h_file_count(srv.log, "http request") >= 1, "no reason for plain HTTP: %s",
              h_read_file(srv.log));
    cr_assert_eq(s_client("-tls1_3", GET_CLOSE), 0, "%s", out);
}

/* header_timeout (3 s) covers the handshake: half a ClientHello, then
 * silence, is cut then and counted as a failure. */
Test(tls, stalled_handshake_cut_at_header_timeout)
{
    start(1, "", NULL);
    int64_t t0 = h_now_ms();
    int fd = h_tcp_connect(port);
    cr_assert_geq(fd, 0);
    cr_assert_eq(h_write_full(fd, "\x16\x03\x01\x01\x00\x01\x00", 7), 0);
    cr_assert_not(h_closed_by_peer(fd, 1000), "closed before header_timeout");
    cr_assert(h_closed_by_peer(fd, 20000), "a stalled handshake was not cut");
    cr_assert_geq(h_now_ms() - t0, 2900, "cut before header_timeout");
    close(fd);
    cr_assert(WAIT_UNTIL(total_failed() == 1, 5000));
    cr_assert_eq(failed_by("timeout"), 1);
    cr_assert(WAIT_UNTIL(h_file_count(srv.log, "not finished") == 1, 5000), "%s",
              h_read_file(srv.log));
}

/* --- configuration and reloads ------------------------------------------ */

static void reload_and_wait(double reloads_before)
{
    cr_assert_eq(kill(srv.pid, SIGHUP), 0);
    cr_assert(WAIT_UNTIL(h_status_number(&srv, "reloads") == reloads_before + 1, 10000),
              "no verdict");
    cr_assert_eq(h_run(out, sizeof out, "%s status --json -c %s 2>/dev/null", h_bin(), srv.conf),
                 0);
}

Test(tls, config_errors_name_file_and_line)
{
    make_ca();
    make_cert("server");
    server_write_conf(&srv, "listen {\n address = \"127.0.0.1:%d\" protocol = \"echo\"\n"
                      " tls { certificate = \"server.pem\" key = \"server.key\" }\n}\n", port);
    cr_assert_neq(h_run(out, sizeof out, "%s -t -c %s", h_bin(), srv.conf), 0);
    char want[PATH_MAX + 64];
    snprintf(want, sizeof want, "%s:7: listen.tls: only http listeners", srv.conf);
    cr_assert(strstr(out, want), "want %s in %s", want, out);
    server_write_conf(&srv, "listen {\n address = \"127.0.0.1:%d\"\n tls {\n"
                      "  certificate = \"server.pem\" key = \"server.key\"\n"
                      "  protocols = {\"TLSv1.1\"}\n }\n}\n", port);
    cr_assert_neq(h_run(out, sizeof out, "%s -t -c %s", h_bin(), srv.conf), 0);
    snprintf(want, sizeof want, "%s:9: listen.tls.protocols: \"TLSv1.1\"", srv.conf);
    cr_assert(strstr(out, want), "want %s in %s", want, out);
    server_write_conf(&srv, "listen {\n address = \"127.0.0.1:%d\"\n tls {\n"
                      "  certificate = \"server.pem\" # no key\n }\n}\n", port);
    cr_assert_neq(h_run(out, sizeof out, "%s -t -c %s", h_bin(), srv.conf), 0);
    cr_assert(strstr(out, "listen.tls: key is required"), "%s", out);
    server_write_conf(&srv, "listen {\n address = \"127.0.0.1:%d\"\n tls {\n"
                      "  certificate = \"server.pem\" # a comment\n"
                      "  key = \"missing.key\"\n }\n}\n", port);
    cr_assert_neq(h_run(out, sizeof out, "%s -t -c %s", h_bin(), srv.conf), 0);
    snprintf(want, sizeof want, "%s:9: listen.tls.key: cannot read", srv.conf);
    cr_assert(strstr(out, want), "want %s in %s", want, out);
    server_write_conf(&srv, "listen {\n address = \"127.0.0.1:%d\"\n tls {\n"
                      "  certificate = \"server.pem\" # a comment\n"
                      "  key = \"server.key\"\n }\n}\n", port);
    cr_assert_eq(h_run(out, sizeof out, "%s -t -c %s", h_bin(), srv.conf), 0, "%s", out);
}

/* A key of another certificate, then a missing certificate: rejected with
 * FILE:LINE, and the old certificate keeps serving. */
Test(tls, reload_with_bad_key_rejected_old_cert_served)
{
    start(2, "", NULL);
    char old[256], served[256];
    fingerprint("server", old, sizeof old);
    make_cert("other");
    server_write_conf(&srv, "workers = 2\nhttp { root = \"www\" }\n"
                      "listen {\n  address = \"127.0.0.1:%d\"\n  tls {\n"
                      "    certificate = \"server.pem\"\n    key = \"other.key\"\n  }\n}\n", port);
    reload_and_wait(0);
    char want[PATH_MAX + 128];
    snprintf(want, sizeof want, "\"result\":\"rejected\",\"message\":\"%s:11: listen.tls.key: ",
             srv.conf);
    cr_assert(strstr(out, want), "want %s in %s", want, out);
    cr_assert(strstr(out, "does not match the certificate"), "%s", out);
    fingerprint(NULL, served, sizeof served);
    cr_assert_str_eq(served, old);
    server_write_conf(&srv, "workers = 2\nhttp { root = \"www\" }\n"
                      "listen {\n  address = \"127.0.0.1:%d\"\n  tls {\n"
                      "    certificate = \"gone.pem\"\n    key = \"server.key\"\n  }\n}\n", port);
    reload_and_wait(1);
    snprintf(want, sizeof want, "\"result\":\"rejected\",\"message\":\"%s:10: "
             "listen.tls.certificate: cannot read", srv.conf);
    cr_assert(strstr(out, want), "want %s in %s", want, out);
    cr_assert_eq(h_status_number(&srv, "generation"), 1);
    fingerprint(NULL, served, sizeof served);
    cr_assert_str_eq(served, old);
    cr_assert_eq(s_client("-tls1_3", GET_CLOSE), 0, "%s", out);
    cr_assert(strstr(out, "HTTP/1.1 200 OK"), "%s", out);
}

/* A new certificate is served once the reload's verdict is in (old
 * workers still draining may take a last connection meanwhile), and
 * from then on only it. */
Test(tls, reload_serves_new_cert_after_verdict)
{
    start(2, "", NULL);
    char old[256], want[256], served[256];
    fingerprint("server", old, sizeof old);
    make_cert("next");
    fingerprint("next", want, sizeof want);
    cr_assert_str_neq(old, want);
    write_conf(2, "", "next");
    reload_and_wait(0);
    cr_assert(strstr(out, "\"result\":\"ok\""), "%s", out);
    cr_assert(WAIT_UNTIL((fingerprint(NULL, served, sizeof served), strcmp(served, want) == 0),
                         10000), "served %s, want %s", served, want);
    for (int i = 0; i < 6; i++) {
        fingerprint(NULL, served, sizeof served);
        cr_assert_str_eq(served, want, "connection %d after the verdict", i);
    }
}

/* 20 reloads (each with a freshly written certificate file) under HTTPS
 * load, connection per request and keep-alive: nothing fails. Under
 * valgrind 3 (each reload starts workers there in seconds). */
Test(tls, reloads_under_https_load)
{
    int reloads = getenv("PREFORKD_VALGRIND") ? 3 : 20;
    start(2, "", NULL);
    char ca[PATH_MAX];
    snprintf(ca, sizeof ca, "%s/ca.pem", srv.dir);
    struct h_load per, keep;
    h_load_start_tls(&per, 2, port, ca,
                     "GET /1k.bin HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", "07e5");
    h_load_start_tls(&keep, 2, port, ca, "GET /1k.bin HTTP/1.1\r\nHost: localhost\r\n\r\n",
                     "07e5");
    for (int r = 0; r < reloads; r++) {
        write_conf(2 + r % 2, "", r % 2 ? "server" : "alt");
        if (r == 0)
            make_cert("alt");
        reload_and_wait(r);
        cr_assert(strstr(out, "\"result\":\"ok\""), "reload %d: %s", r, out);
    }
    long a = per.ok, b = keep.ok;
    cr_assert(WAIT_UNTIL(per.ok > a + 20 && keep.ok > b + 20, 30000));
    h_load_stop(&per);
    h_load_stop(&keep);
    cr_log_info("%d reloads over HTTPS: %ld + %ld requests ok, %ld + %ld failed", reloads,
                (long)per.ok, (long)keep.ok, (long)per.failed, (long)keep.failed);
    cr_assert_eq(per.failed, 0, "connection per request: %ld failed; last: %s",
                 (long)per.failed, per.last_failure);
    cr_assert_eq(keep.failed, 0, "keep-alive: %ld failed; last: %s", (long)keep.failed,
                 keep.last_failure);
    cr_assert_eq(h_status_number(&srv, "generation"), reloads + 1);
}

/* --- status and a browser ----------------------------------------------- */

Test(tls, status_shows_handshakes_in_table_json_and_prometheus)
{
    start(1, "", NULL);
    cr_assert_eq(s_client("-tls1_3", GET_CLOSE), 0, "%s", out);
    struct tls_counts c[1];
    cr_assert(WAIT_UNTIL(worker_tls(c, 1) == 1 && c[0].handshakes == 1, 5000));
    cr_assert_eq(h_run(out, sizeof out, "%s status -c %s", h_bin(), srv.conf), 0, "%s", out);
    cr_assert(strstr(out, "HANDSHAKES"), "%s", out);
    cr_assert_eq(h_run(out, sizeof out, "%s status --prometheus -c %s", h_bin(), srv.conf), 0,
                 "%s", out);
    const char *badline = NULL;
    cr_assert(h_prometheus_valid(out, &badline), "bad line %s", badline ? badline : "");
    cr_assert(strstr(out, "preforkd_worker_tls_handshakes_total{slot=\"0\""), "%s", out);
}

Test(tls, chromium_loads_the_site_over_https)
{
    make_ca();
    make_cert("server");
    cr_assert_eq(h_run(out, sizeof out, "cp -R '%s/etc/www/.' '%s/www/'", h_root(), srv.dir), 0,
                 "%s", out);
    write_conf(2, "", "server");
    cr_assert_eq(server_start(&srv, NULL), 0);
    char spki[128];
    cr_assert_eq(h_run(spki, sizeof spki, "openssl x509 -in '%s/server.pem' -pubkey -noout | "
                       "openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | "
                       "base64", srv.dir), 0, "%s", spki);
    spki[strcspn(spki, "\n")] = '\0';
    int rc = h_run(out, sizeof out,
                   "cd '%1$s' && timeout 60 chromium --headless --no-sandbox --disable-gpu "
                   "--disable-quic --no-first-run --disable-background-networking "
                   "--disable-component-update --disable-sync --user-data-dir=profile "
                   "--ignore-certificate-errors-spki-list=%3$s "
                   "--screenshot='%1$s/shot.png' --window-size=800,600 "
                   "https://localhost:%2$d/ --host-resolver-rules='MAP localhost 127.0.0.1' "
                   ">chromium.log 2>&1; rc=$?; tail -c 2000 chromium.log; exit $rc",
                   srv.dir, port, spki);
    cr_assert_eq(rc, 0, "chromium exited with %d:\n%s", rc, out);
    char alog[PATH_MAX];
    snprintf(alog, sizeof alog, "%s/access.log", srv.dir);
    cr_assert(WAIT_UNTIL(h_file_count(alog, "\"GET /style.css HTTP/1.1\" 200") == 1 &&
                         h_file_count(alog, "\"GET /logo.png HTTP/1.1\" 200") == 1, 10000),
              "the page's parts were not all fetched: %s", h_read_file(alog));
    cr_assert_eq(h_file_count(alog, "\" 200 "), h_file_count(alog, "\n"),
                 "not every request was a 200: %s", h_read_file(alog));
}

/* --- certificates per site (SNI) ---------------------------------------- */

/* A certificate for DNS name DNS, signed by the test CA, as NAME.pem/.key. */
static void make_site_cert(const char *name, const char *dns)
{
    char san[300];
    snprintf(san, sizeof san, "DNS:%s", dns);
    cr_assert_eq(h_make_tls_cert(srv.dir, name, dns, san, out, sizeof out), 0,
                 "making certificate %s: %s", name, out);
}

/* The listener's certificate (localhost) and two sites with their own: an
 * exact name and a wildcard; site_b's key file is KEY_B; A_EXTRA goes into
 * site a's tls section. */
static void write_sni_conf_a(const char *key_b, const char *a_extra)
{
    server_write_conf(&srv, "workers = 2\ngraceful_timeout = 5\n"
                      "http { root = \"www\" }\n"
                      "listen {\n  address = \"127.0.0.1:%d\"\n"
                      "  tls { certificate = \"server.pem\" key = \"server.key\" }\n}\n"
                      "site a {\n  server_names = {\"a.test\"}\n  root = \"www-a\"\n"
                      "  tls {\n    # a's own\n    certificate = \"a.pem\"\n"
                      "    key = \"a.key\" %s\n  }\n}\n"
                      "site b {\n  server_names = {\"*.b.test\"}\n  root = \"www-b\"\n"
                      "  tls { certificate = \"b.pem\" key = \"%s\" }\n}\n"
                      "site c {\n  server_names = {\"c.test\"}\n  root = \"www-c\"\n}\n",
                      port, a_extra, key_b);
}

static void write_sni_conf(const char *key_b)
{
    write_sni_conf_a(key_b, "");
}

static void start_sni(void)
{
    make_ca();
    make_cert("server");
    make_site_cert("a", "a.test");
    make_site_cert("b", "*.b.test");
    cr_assert_eq(h_run(out, sizeof out, "cd '%s' && mkdir -p www www-a www-b www-c && "
                       "echo default > www/index.html && echo site-a > www-a/index.html && "
                       "echo site-b > www-b/index.html && echo site-c > www-c/index.html",
                       srv.dir), 0, "%s", out);
    write_sni_conf("b.key");
    cr_assert_eq(server_start(&srv, NULL), 0, "server did not start: %s",
                 h_read_file(srv.out) ? h_read_file(srv.out) : "");
}

/* curl, verifying the certificate against the test CA for the name it
 * asks for; the body (or curl's error) in out. */
static int curl_name(const char *name)
{
    return h_run(out, sizeof out, "cd '%s' && curl -sS --max-time 20 --cacert ca.pem "
                 "--resolve %s:%d:127.0.0.1 https://%s:%d/ 2>&1", srv.dir, name, port, name,
                 port);
}

/* The subject of the certificate served for SNI name (NULL: no SNI). */
static void served_subject(const char *name, char *subj, size_t cap)
{
    char sni[300];
    snprintf(sni, sizeof sni, name ? "-servername %s" : "-noservername", name);
    if (h_run(subj, cap, "timeout 20 openssl s_client -connect 127.0.0.1:%d %s </dev/null "
              "2>/dev/null | openssl x509 -noout -subject", port, sni) != 0)
        subj[0] = '\0';
}

Test(tls, site_certificates_chosen_by_sni)
{
    start_sni();
    cr_assert_eq(curl_name("a.test"), 0, "a.test: %s", out);
    cr_assert(strstr(out, "site-a"), "%s", out);
    cr_assert_eq(curl_name("www.b.test"), 0, "www.b.test: %s", out);
    cr_assert(strstr(out, "site-b"), "%s", out);
    cr_assert_eq(curl_name("localhost"), 0, "localhost: %s", out);
    cr_assert(strstr(out, "default"), "%s", out);
    char subj[512];
    served_subject("c.test", subj, sizeof subj);   /* a site without a certificate */
    cr_assert(strstr(subj, "CN = localhost"), "c.test got %s", subj);
    served_subject("unknown.test", subj, sizeof subj);
    cr_assert(strstr(subj, "CN = localhost"), "unknown.test got %s", subj);
    served_subject(NULL, subj, sizeof subj);
    cr_assert(strstr(subj, "CN = localhost"), "no SNI got %s", subj);
    served_subject("A.TEST", subj, sizeof subj);   /* names match as Host does */
    cr_assert(strstr(subj, "CN = a.test"), "A.TEST got %s", subj);
    /* A site's session resumes (its context opens the pool's tickets). */
    cr_assert_eq(s_client("-servername a.test -sess_out sa.pem", GET_CLOSE), 0, "%s", out);
    cr_assert_eq(s_client("-servername a.test -sess_in sa.pem", GET_CLOSE), 0, "%s", out);
    cr_assert(strstr(out, "\nReused, "), "%s", out);
}

/* A site's bad key is a FILE:LINE verdict at reload and at -t; the old
 * certificates keep serving. A site's tls without a tls listener is one. */
Test(tls, site_certificate_errors_name_file_and_line)
{
    start_sni();
    make_site_cert("other", "other.test");
    write_sni_conf("other.key");
    reload_and_wait(0);
    char want[PATH_MAX + 128];
    snprintf(want, sizeof want, "\"result\":\"rejected\",\"message\":\"%s:24: site.tls.key: ",
             srv.conf);
    cr_assert(strstr(out, want), "want %s in %s", want, out);
    cr_assert(strstr(out, "does not match the certificate"), "%s", out);
    cr_assert_eq(curl_name("www.b.test"), 0, "www.b.test: %s", out);
    cr_assert(strstr(out, "site-b"), "%s", out);
    write_sni_conf("");
    cr_assert_neq(h_run(out, sizeof out, "%s -t -c %s", h_bin(), srv.conf), 0);
    snprintf(want, sizeof want, "%s:24: site.tls.key: must not be empty", srv.conf);
    cr_assert(strstr(out, want), "want %s in %s", want, out);
    server_write_conf(&srv, "http { root = \"www\" }\n"
                      "listen {\n  address = \"127.0.0.1:%d\"\n}\n"
                      "site a {\n  server_names = {\"a.test\"}\n  root = \"www-a\"\n"
                      "  tls { certificate = \"a.pem\" key = \"a.key\" }\n}\n", port);
    cr_assert_neq(h_run(out, sizeof out, "%s -t -c %s", h_bin(), srv.conf), 0);
    snprintf(want, sizeof want, "%s:12: site.tls: no listen section has tls", srv.conf);
    cr_assert(strstr(out, want), "want %s in %s", want, out);
}

/* --- OCSP stapling ------------------------------------------------------ */

/* An OCSP response about certificate CERT.pem, signed by the test CA (as
 * its own responder), saying STATUS ('V' good, 'R' revoked): OUT.ocsp. */
static void make_ocsp(const char *cert, char status, const char *out_name)
{
    int rc = h_run(out, sizeof out,
                   "cd '%1$s' && serial=$(openssl x509 -in %2$s.pem -noout -serial | cut -d= -f2) "
                   "&& end=$(date -u -d '+2 days' +%%y%%m%%d%%H%%M%%SZ) && "
                   "printf '%3$c\\t%%s\\t%4$s\\t%%s\\tunknown\\t/CN=x\\n' \"$end\" \"$serial\" "
                   "> %5$s.index && openssl ocsp -issuer ca.pem -cert %2$s.pem -no_nonce "
                   "-reqout %5$s.req 2>&1 && openssl ocsp -index %5$s.index -rsigner ca.pem "
                   "-rkey ca.key -CA ca.pem -reqin %5$s.req -respout %5$s.ocsp -ndays 1 2>&1",
                   srv.dir, cert, status, status == 'R' ? "260101000000Z" : "", out_name);
    cr_assert_eq(rc, 0, "making the OCSP response %s: %s", out_name, out);
}

/* A client that asks for the status gets the response (s_client -status);
 * the test server without ocsp_response staples nothing. */
Test(tls, ocsp_response_is_stapled)
{
    make_ca();
    make_cert("server");
    make_ocsp("server", 'V', "good");
    write_file("index.html", 64);
    write_conf(2, "chain = \"ca.pem\"\n    # the status, fetched by cron\n"
               "    ocsp_response = \"good.ocsp\"", "server");
    cr_assert_eq(server_start(&srv, NULL), 0, "server did not start: %s",
                 h_read_file(srv.out) ? h_read_file(srv.out) : "");
    for (int i = 0; i < 4; i++) {       /* both workers, 1.2 and 1.3 */
        cr_assert_eq(s_client(i % 2 ? "-status -tls1_2" : "-status -tls1_3", GET_CLOSE), 0,
                     "%s", out);
        cr_assert(strstr(out, "OCSP Response Status: successful"), "%s", out);
        cr_assert(strstr(out, "Cert Status: good"), "%s", out);
        cr_assert(strstr(out, "HTTP/1.1 200 OK"), "%s", out);
    }
    write_conf(2, "", "server");
    reload_and_wait(0);
    cr_assert(strstr(out, "\"result\":\"ok\""), "%s", out);
    cr_assert(WAIT_UNTIL(s_client("-status", GET_CLOSE) == 0 &&
                         strstr(out, "OCSP response: no response sent"), 10000), "%s", out);
}

/* What the master checks of the response, each a FILE:LINE verdict. */
Test(tls, ocsp_response_errors_name_file_and_line)
{
    make_ca();
    make_cert("server");
    make_cert("other");
    make_ocsp("other", 'V', "other");
    make_ocsp("server", 'R', "revoked");
    make_ocsp("server", 'V', "good");
    write_file("index.html", 64);
    static const struct { const char *extra, *want; } cases[] = {
        { "chain = \"ca.pem\" ocsp_response = \"server.pem\"", "is not a DER OCSP response" },
        { "chain = \"ca.pem\" ocsp_response = \"gone.ocsp\"", "cannot read \"" },
        { "chain = \"ca.pem\" ocsp_response = \"other.ocsp\"", "is not about the certificate" },
        { "chain = \"ca.pem\" ocsp_response = \"revoked.ocsp\"", "says the certificate is revoked" },
        { "ocsp_response = \"good.ocsp\"", "issuer is in neither certificate nor chain" },
    };
    char want[PATH_MAX + 128];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_conf(2, cases[i].extra, "server");
        cr_assert_neq(h_run(out, sizeof out, "%s -t -c %s", h_bin(), srv.conf), 0, "%s",
                      cases[i].extra);
        snprintf(want, sizeof want, "%s:14: listen.tls.ocsp_response: ", srv.conf);
        cr_assert(strstr(out, want), "%s: want %s in %s", cases[i].extra, want, out);
        cr_assert(strstr(out, cases[i].want), "%s: want %s in %s", cases[i].extra,
                  cases[i].want, out);
    }
    write_conf(2, "chain = \"ca.pem\" ocsp_response = \"good.ocsp\"", "server");
    cr_assert_eq(h_run(out, sizeof out, "%s -t -c %s", h_bin(), srv.conf), 0, "%s", out);
}

/* A site's own response is stapled with its certificate; the listener's
 * certificate has none. */
Test(tls, site_ocsp_response_is_stapled)
{
    start_sni();
    make_ocsp("a", 'V', "a-good");
    write_sni_conf_a("b.key", "chain = \"ca.pem\" ocsp_response = \"a-good.ocsp\"");
    reload_and_wait(0);
    cr_assert(strstr(out, "\"result\":\"ok\""), "%s", out);
    cr_assert(WAIT_UNTIL(s_client("-status -servername a.test", GET_CLOSE) == 0 &&
                         strstr(out, "OCSP Response Status: successful"), 10000), "%s", out);
    cr_assert(strstr(out, "Cert Status: good"), "%s", out);
    cr_assert_eq(s_client("-status -servername localhost", GET_CLOSE), 0, "%s", out);
    cr_assert(strstr(out, "OCSP response: no response sent"), "%s", out);
}

/* --- failures by reason ------------------------------------------------- */

/* Each kind of failed handshake is counted under its reason, in JSON, the
 * text table and Prometheus: a client too old (version), one without our
 * ciphers (cipher), one that refuses our certificate (certificate), one
 * that leaves mid-handshake (closed). */
Test(tls, failures_by_reason_in_status)
{
    start(2, "", NULL);
    h_run(out, sizeof out, "timeout 20 openssl s_client -connect 127.0.0.1:%d -tls1_1 "
          "-cipher DEFAULT@SECLEVEL=0 </dev/null 2>&1", port);
    cr_assert(WAIT_UNTIL(failed_by("version") == 1, 10000), "%s", out);
    h_run(out, sizeof out, "timeout 20 openssl s_client -connect 127.0.0.1:%d -tls1_2 "
          "-cipher AES128-SHA </dev/null 2>&1", port);
    cr_assert(WAIT_UNTIL(failed_by("cipher") == 1, 10000), "%s", out);
    /* curl trusts the system's CAs, not the test's: it refuses ours. */
    cr_assert_neq(h_run(out, sizeof out, "curl -sS --max-time 20 https://localhost:%d/", port), 0);
    cr_assert(WAIT_UNTIL(failed_by("certificate") == 1, 10000), "%s", out);
    int fd = h_tcp_connect(port);
    cr_assert_geq(fd, 0);
    cr_assert_eq(h_write_full(fd, "\x16\x03\x01\x01\x00\x01\x00", 7), 0);
    close(fd);
    cr_assert(WAIT_UNTIL(failed_by("closed") == 1, 10000));
    cr_assert_eq(failed_by("protocol") + failed_by("timeout"), 0);
    cr_assert_eq(total_failed(), 4);
    cr_assert_eq(h_run(out, sizeof out, "%s status -c %s", h_bin(), srv.conf), 0);
    cr_assert(strstr(out, "(version 1") || strstr(out, "version 1)") ||
              strstr(out, ", version 1"), "%s", out);
    cr_assert(strstr(out, "certificate 1"), "%s", out);
    cr_assert_eq(h_run(out, sizeof out, "%s status --prometheus -c %s", h_bin(), srv.conf), 0);
    cr_assert(strstr(out, "# TYPE preforkd_worker_tls_failures_total counter"), "%s", out);
    cr_assert(strstr(out, ",reason=\"cipher\"} 1\n"), "%s", out);
}
