/* The least a process between two workers can cost: accept a subscriber, then a publisher, on
   127.0.0.1:PORT, and copy every byte the publisher writes to the subscriber (epoll, read, write).
   bench/nats_floor.py compiles it and measures its CPU per write beside nats-server's. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

static char buffer[1 << 20];

int main(int argc, char **argv) {
    int one = 1;
    if (argc != 2) {
        fprintf(stderr, "usage: %s PORT\n", argv[0]);
        return 2;
    }
    int listener = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1])),
                                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(listener, (struct sockaddr *)&address, sizeof address) || listen(listener, 4)) {
        perror("listen");
        return 1;
    }
    int subscriber = accept(listener, NULL, NULL), publisher = accept(listener, NULL, NULL);
    setsockopt(subscriber, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int poll = epoll_create1(0);
    struct epoll_event event = {.events = EPOLLIN, .data.fd = publisher}, ready;
    epoll_ctl(poll, EPOLL_CTL_ADD, publisher, &event);
    for (;;) {
        if (epoll_wait(poll, &ready, 1, -1) < 1)
            continue;
        ssize_t n = read(publisher, buffer, sizeof buffer);
        if (n <= 0)
            return 0;
        for (ssize_t done = 0; done < n;) {
            ssize_t w = write(subscriber, buffer + done, n - done);
            if (w <= 0)
                return 0;
            done += w;
        }
    }
}
