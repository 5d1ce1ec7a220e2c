/* Test workloads that reach the kernel the ways attackers do, for the blind-spot tests.
 * Built by the tests with gcc; every subcommand prints one result line and exits 0 when the
 * operation itself could be issued (its result is printed, not judged).
 *
 *   connect32 IP PORT        socket + connect through the ia32 entry (int 0x80)
 *   socketcall_connect IP PORT  socket + connect through i386 socketcall (int 0x80)
 *   setuid32 UID             setuid32 through int 0x80
 *   setuid32_wait UID        setuid32 through int 0x80, print, then stay alive until stdin
 *                            closes (so a test can see the event arrive before the exit)
 *   setuid32_on_line UID     wait for a line on stdin, then as setuid32_wait (so a test can
 *                            start the process before the sensor)
 *   fork_setuid32_wait UID   fork; the child, which never execs, runs setuid32_wait; the
 *                            parent waits for it
 *   uring_connect IP PORT    IORING_OP_CONNECT on a raw io_uring (no liburing)
 *   uring_write PATH TEXT    IORING_OP_OPENAT (create) then IORING_OP_WRITE
 *   memfd_exec NAME PROG ARGS...  copy PROG into a memfd and execveat(fd, "", AT_EMPTY_PATH)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/io_uring.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static long int80(long nr, long a, long b, long c)
{
	long ret;
	__asm__ volatile("int $0x80"
			 : "=a"(ret)
			 : "a"(nr), "b"(a), "c"(b), "d"(c)
			 : "memory", "r8", "r9", "r10", "r11");
	return ret;
}

/* i386 syscall numbers. */
#define NR32_SOCKET 359
#define NR32_CONNECT 362
#define NR32_SETUID32 213
#define NR32_SOCKETCALL 102
#define SYS_SOCKET_CALL 1
#define SYS_CONNECT_CALL 3

static int connect32(const char *ip, int port)
{
	/* ia32 pointers are 32 bits: the sockaddr must live below 4 GiB. */
	struct sockaddr_in *sa = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
				      MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
	if (sa == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	sa->sin_port = htons(port);
	inet_pton(AF_INET, ip, &sa->sin_addr);
	long fd = int80(NR32_SOCKET, AF_INET, SOCK_STREAM, 0);
	if (fd < 0) {
		printf("socket32 %ld\n", fd);
		return 1;
	}
	long ret = int80(NR32_CONNECT, fd, (long)(uintptr_t)sa, sizeof(*sa));
	printf("connect32 pid=%d ret=%ld\n", getpid(), ret);
	return 0;
}

static int socketcall_connect(const char *ip, int port)
{
	/* The sockaddr and the socketcall argument block (i386 longs) below 4 GiB. */
	char *low = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
	if (low == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	struct sockaddr_in *sa = (struct sockaddr_in *)low;
	uint32_t *args = (uint32_t *)(low + 64);
	memset(low, 0, 4096);
	sa->sin_family = AF_INET;
	sa->sin_port = htons(port);
	inet_pton(AF_INET, ip, &sa->sin_addr);
	args[0] = AF_INET;
	args[1] = SOCK_STREAM;
	args[2] = 0;
	long fd = int80(NR32_SOCKETCALL, SYS_SOCKET_CALL, (long)(uintptr_t)args, 0);
	if (fd < 0) {
		printf("socketcall socket %ld\n", fd);
		return 1;
	}
	args[0] = fd;
	args[1] = (uint32_t)(uintptr_t)sa;
	args[2] = sizeof(*sa);
	long ret = int80(NR32_SOCKETCALL, SYS_CONNECT_CALL, (long)(uintptr_t)args, 0);
	printf("socketcall_connect pid=%d ret=%ld\n", getpid(), ret);
	return 0;
}

static int setuid32_wait(long uid)
{
	long ret = int80(NR32_SETUID32, uid, 0, 0);
	printf("setuid32 pid=%d ret=%ld uid=%d\n", getpid(), ret, getuid());
	fflush(stdout);
	char buf[64];
	while (read(0, buf, sizeof(buf)) > 0)
		;
	return ret == 0 ? 0 : 1;
}

static int setuid32_on_line(long uid)
{
	char buf[64];
	if (read(0, buf, sizeof(buf)) <= 0)
		return 1;
	return setuid32_wait(uid);
}

static int fork_setuid32_wait(long uid)
{
	fflush(stdout);
	pid_t child = fork();
	if (child < 0)
		return 1;
	if (child == 0)
		_exit(setuid32_wait(uid));
	int status;
	if (waitpid(child, &status, 0) < 0)
		return 1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

static int setuid32(long uid)
{
	long ret = int80(NR32_SETUID32, uid, 0, 0);
	printf("setuid32 pid=%d ret=%ld uid=%d\n", getpid(), ret, getuid());
	return ret == 0 ? 0 : 1;
}

struct ring {
	int fd;
	unsigned *sq_tail, *sq_mask, *sq_array, *cq_head, *cq_tail, *cq_mask;
	struct io_uring_sqe *sqes;
	struct io_uring_cqe *cqes;
};

static int ring_setup(struct ring *r)
{
	struct io_uring_params p;
	memset(&p, 0, sizeof(p));
	r->fd = syscall(__NR_io_uring_setup, 8, &p);
	if (r->fd < 0) {
		perror("io_uring_setup");
		return -1;
	}
	size_t sq_len = p.sq_off.array + p.sq_entries * sizeof(unsigned);
	size_t cq_len = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
	char *sq = mmap(NULL, sq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd,
			IORING_OFF_SQ_RING);
	char *cq = mmap(NULL, cq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd,
			IORING_OFF_CQ_RING);
	r->sqes = mmap(NULL, p.sq_entries * sizeof(struct io_uring_sqe), PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_POPULATE, r->fd, IORING_OFF_SQES);
	if (sq == MAP_FAILED || cq == MAP_FAILED || r->sqes == MAP_FAILED) {
		perror("mmap ring");
		return -1;
	}
	r->sq_tail = (unsigned *)(sq + p.sq_off.tail);
	r->sq_mask = (unsigned *)(sq + p.sq_off.ring_mask);
	r->sq_array = (unsigned *)(sq + p.sq_off.array);
	r->cq_head = (unsigned *)(cq + p.cq_off.head);
	r->cq_tail = (unsigned *)(cq + p.cq_off.tail);
	r->cq_mask = (unsigned *)(cq + p.cq_off.ring_mask);
	r->cqes = (struct io_uring_cqe *)(cq + p.cq_off.cqes);
	return 0;
}

/* Submits one SQE and waits for its completion; returns cqe->res. */
static int ring_run(struct ring *r, const struct io_uring_sqe *sqe)
{
	unsigned tail = *r->sq_tail;
	unsigned idx = tail & *r->sq_mask;
	r->sqes[idx] = *sqe;
	r->sq_array[idx] = idx;
	__atomic_store_n(r->sq_tail, tail + 1, __ATOMIC_RELEASE);
	int n = syscall(__NR_io_uring_enter, r->fd, 1, 1, IORING_ENTER_GETEVENTS, NULL, 0);
	if (n < 0) {
		perror("io_uring_enter");
		exit(1);
	}
	unsigned head = __atomic_load_n(r->cq_head, __ATOMIC_ACQUIRE);
	while (head == __atomic_load_n(r->cq_tail, __ATOMIC_ACQUIRE))
		;
	int res = r->cqes[head & *r->cq_mask].res;
	__atomic_store_n(r->cq_head, head + 1, __ATOMIC_RELEASE);
	return res;
}

static int uring_connect(const char *ip, int port)
{
	struct ring r;
	if (ring_setup(&r))
		return 1;
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
	inet_pton(AF_INET, ip, &sa.sin_addr);
	struct io_uring_sqe sqe;
	memset(&sqe, 0, sizeof(sqe));
	sqe.opcode = IORING_OP_CONNECT;
	sqe.fd = s;
	sqe.addr = (uintptr_t)&sa;
	sqe.off = sizeof(sa);
	int res = ring_run(&r, &sqe);
	printf("uring_connect pid=%d res=%d\n", getpid(), res);
	return 0;
}

static int uring_write(const char *path, const char *text)
{
	struct ring r;
	if (ring_setup(&r))
		return 1;
	struct io_uring_sqe sqe;
	memset(&sqe, 0, sizeof(sqe));
	sqe.opcode = IORING_OP_OPENAT;
	sqe.fd = AT_FDCWD;
	sqe.addr = (uintptr_t)path;
	sqe.len = 0644;
	sqe.open_flags = O_CREAT | O_WRONLY | O_TRUNC;
	int fd = ring_run(&r, &sqe);
	if (fd < 0) {
		printf("uring_openat res=%d\n", fd);
		return 1;
	}
	memset(&sqe, 0, sizeof(sqe));
	sqe.opcode = IORING_OP_WRITE;
	sqe.fd = fd;
	sqe.addr = (uintptr_t)text;
	sqe.len = strlen(text);
	sqe.off = 0;
	int res = ring_run(&r, &sqe);
	printf("uring_write pid=%d fd=%d res=%d\n", getpid(), fd, res);
	close(fd);
	return res == (int)strlen(text) ? 0 : 1;
}

static int memfd_exec(const char *name, char **argv)
{
	int fd = memfd_create(name, 0);
	int src = open(argv[0], O_RDONLY);
	struct stat st;
	if (fd < 0 || src < 0 || fstat(src, &st) < 0) {
		perror("memfd");
		return 1;
	}
	off_t off = 0;
	while (off < st.st_size)
		if (sendfile(fd, src, &off, st.st_size - off) <= 0) {
			perror("sendfile");
			return 1;
		}
	close(src);
	fflush(stdout);
	char *envp[] = { NULL };
	syscall(__NR_execveat, fd, "", argv, envp, AT_EMPTY_PATH);
	perror("execveat");
	return 1;
}

int main(int argc, char **argv)
{
	if (argc >= 4 && !strcmp(argv[1], "connect32"))
		return connect32(argv[2], atoi(argv[3]));
	if (argc >= 4 && !strcmp(argv[1], "socketcall_connect"))
		return socketcall_connect(argv[2], atoi(argv[3]));
	if (argc >= 3 && !strcmp(argv[1], "setuid32_wait"))
		return setuid32_wait(atol(argv[2]));
	if (argc >= 3 && !strcmp(argv[1], "setuid32_on_line"))
		return setuid32_on_line(atol(argv[2]));
	if (argc >= 3 && !strcmp(argv[1], "fork_setuid32_wait"))
		return fork_setuid32_wait(atol(argv[2]));
	if (argc >= 3 && !strcmp(argv[1], "setuid32"))
		return setuid32(atol(argv[2]));
	if (argc >= 4 && !strcmp(argv[1], "uring_connect"))
		return uring_connect(argv[2], atoi(argv[3]));
	if (argc >= 4 && !strcmp(argv[1], "uring_write"))
		return uring_write(argv[2], argv[3]);
	if (argc >= 4 && !strcmp(argv[1], "memfd_exec"))
		return memfd_exec(argv[2], argv + 3);
	fprintf(stderr, "usage: see the comment at the top of attacks.c\n");
	return 2;
}
