/*
 * The floor for the benchmarks: the least a relaying proxy can cost on this
 * machine. One thread, epoll, and splice(2) through a 1 MiB pipe per
 * direction, the way Bridle's own TCP relay moves bytes, and nothing else:
 * no redirection, no detection, no policy, no audit, no TLS. Whatever a
 * proxy in the path costs beyond what this relay costs in the same run is
 * the proxy's own work; what this relay costs is the price of one more
 * process and two more loopback hops on the machine.
 *
 * usage: relay LISTEN_ADDR LISTEN_PORT UPSTREAM_ADDR UPSTREAM_PORT READY_FILE
 *   (IPv4; READY_FILE is created once it listens)
 *
 * Built by the bench scripts with the host's C compiler (`cc -O2`);
 * benchmark-only, never part of Bridle. Half-close is passed on (one side's
 * EOF becomes a write shutdown on the other); any error closes the
 * connection. It runs until killed.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define PIPE_BYTES (1 << 20)

struct half {
    int from, to;
    int pipe[2];
    size_t in_pipe;
    int eof, done;
};

struct conn;
struct end {
    struct conn *conn;
    int fd;
    unsigned mask; /* the epoll events asked for now */
};

struct conn {
    struct end client, upstream;
    struct half up, down;
    int connected, dead;
    struct conn *next_dead;
};

static int epfd;
static struct sockaddr_in upstream_addr;
/* Closed in this batch of events, freed after it: a later event of the
 * batch may still point at them. */
static struct conn *graveyard;

static void die(const char *what) {
    perror(what);
    exit(2);
}

/* Empty pipes kept for the next connection, as Bridle's relay keeps them:
 * a new connection costs no pipe2() and no resize. */
#define POOL_MAX 64
static int pool[POOL_MAX][2];
static int pooled;

static int take_pipe(int fds[2]) {
    if (pooled > 0) {
        pooled--;
        fds[0] = pool[pooled][0];
        fds[1] = pool[pooled][1];
        return 0;
    }
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0)
        return -1;
    /* Past fs.pipe-max-size the kernel refuses; the default pipe works. */
    (void)fcntl(fds[1], F_SETPIPE_SZ, PIPE_BYTES);
    return 0;
}

/* Only an empty pipe goes back to the pool. */
static void give_pipe(struct half *h) {
    if (h->pipe[0] < 0)
        return;
    if (h->in_pipe == 0 && pooled < POOL_MAX) {
        pool[pooled][0] = h->pipe[0];
        pool[pooled][1] = h->pipe[1];
        pooled++;
    } else {
        close(h->pipe[0]);
        close(h->pipe[1]);
    }
    h->pipe[0] = h->pipe[1] = -1;
}

static void close_conn(struct conn *c) {
    close(c->client.fd);
    close(c->upstream.fd);
    give_pipe(&c->up);
    give_pipe(&c->down);
    c->dead = 1;
    c->next_dead = graveyard;
    graveyard = c;
}

/* Moves what it can in one direction; -1 on an error. */
static int pump(struct half *h) {
    for (;;) {
        if (h->in_pipe > 0) {
            ssize_t n = splice(h->pipe[0], NULL, h->to, NULL, h->in_pipe, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
            if (n < 0)
                return errno == EAGAIN ? 0 : -1;
            h->in_pipe -= (size_t)n;
            continue;
        }
        if (h->eof) {
            if (!h->done) {
                shutdown(h->to, SHUT_WR);
                h->done = 1;
            }
            return 0;
        }
        ssize_t n = splice(h->from, NULL, h->pipe[1], NULL, PIPE_BYTES, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n == 0)
            h->eof = 1;
        else if (n < 0)
            return errno == EAGAIN ? 0 : -1;
        else
            h->in_pipe = (size_t)n;
    }
}

static unsigned want(const struct conn *c, const struct end *e) {
    const struct half *reads = e == &c->client ? &c->up : &c->down;
    const struct half *writes = e == &c->client ? &c->down : &c->up;
    if (!c->connected)
        return e == &c->upstream ? EPOLLOUT : 0;
    unsigned mask = 0;
    if (!reads->eof && reads->in_pipe == 0)
        mask |= EPOLLIN;
    if (writes->in_pipe > 0)
        mask |= EPOLLOUT;
    return mask;
}

static int watch(struct conn *c, struct end *e) {
    unsigned mask = want(c, e);
    if (mask == e->mask)
        return 0;
    struct epoll_event ev = {.events = mask, .data.ptr = e};
    e->mask = mask;
    return epoll_ctl(epfd, EPOLL_CTL_MOD, e->fd, &ev);
}

static void step(struct conn *c, const struct end *e, unsigned events) {
    if (c->dead)
        return;
    if (!c->connected) {
        if (e != &c->upstream) {
            if (events & (EPOLLHUP | EPOLLERR))
                close_conn(c);
            return;
        }
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(c->upstream.fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err != 0) {
            close_conn(c);
            return;
        }
        c->connected = 1;
    }
    if (pump(&c->up) < 0 || pump(&c->down) < 0 || (c->up.done && c->down.done)) {
        close_conn(c);
        return;
    }
    if (watch(c, &c->client) < 0 || watch(c, &c->upstream) < 0)
        close_conn(c);
}

static void accept_all(int listener) {
    for (;;) {
        int client = accept4(listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (client < 0)
            return;
        int upstream = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        struct conn *c = calloc(1, sizeof *c);
        if (upstream < 0 || c == NULL) {
            close(client);
            if (upstream >= 0)
                close(upstream);
            free(c);
            continue;
        }
        int one = 1;
        setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        setsockopt(upstream, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        c->client = (struct end){.conn = c, .fd = client};
        c->upstream = (struct end){.conn = c, .fd = upstream};
        c->up.pipe[0] = c->up.pipe[1] = c->down.pipe[0] = c->down.pipe[1] = -1;
        c->up.from = c->down.to = client;
        c->up.to = c->down.from = upstream;
        if (take_pipe(c->up.pipe) < 0 || take_pipe(c->down.pipe) < 0 ||
            (connect(upstream, (struct sockaddr *)&upstream_addr, sizeof upstream_addr) < 0 && errno != EINPROGRESS)) {
            close_conn(c);
            continue;
        }
        struct epoll_event ev = {.events = 0, .data.ptr = &c->client};
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, client, &ev) < 0) {
            close_conn(c);
            continue;
        }
        ev.data.ptr = &c->upstream;
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, upstream, &ev) < 0) {
            close_conn(c);
            continue;
        }
        if (watch(c, &c->client) < 0 || watch(c, &c->upstream) < 0)
            close_conn(c);
    }
}

static struct sockaddr_in parse_addr(const char *ip, const char *port) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((unsigned short)atoi(port))};
    if (inet_pton(AF_INET, ip, &a.sin_addr) != 1) {
        fprintf(stderr, "relay: not an IPv4 address: %s\n", ip);
        exit(2);
    }
    return a;
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: relay LISTEN_ADDR LISTEN_PORT UPSTREAM_ADDR UPSTREAM_PORT READY_FILE\n");
        return 2;
    }
    struct sockaddr_in listen_addr = parse_addr(argv[1], argv[2]);
    upstream_addr = parse_addr(argv[3], argv[4]);
    int listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (listener < 0 || setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0)
        die("relay: socket");
    if (bind(listener, (struct sockaddr *)&listen_addr, sizeof listen_addr) < 0 || listen(listener, 4096) < 0)
        die("relay: bind/listen");
    epfd = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    if (epfd < 0 || epoll_ctl(epfd, EPOLL_CTL_ADD, listener, &ev) < 0)
        die("relay: epoll");
    int ready = open(argv[5], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (ready < 0)
        die("relay: ready file");
    close(ready);
    struct epoll_event events[64];
    for (;;) {
        int n = epoll_wait(epfd, events, 64, -1);
        if (n < 0 && errno != EINTR)
            die("relay: epoll_wait");
        for (int i = 0; i < n; i++) {
            struct end *e = events[i].data.ptr;
            if (e == NULL)
                accept_all(listener);
            else
                step(e->conn, e, events[i].events);
        }
        while (graveyard != NULL) {
            struct conn *c = graveyard;
            graveyard = c->next_dead;
            free(c);
        }
    }
}
