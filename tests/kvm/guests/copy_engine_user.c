/*
 * Drives dvmm's copy-engine example device (examples/copy_engine.ts) from
 * Linux userspace, with no driver of its own: the device is bound to
 * uio_pci_generic, which gives INTx interrupts on /dev/uioN, and the program
 * reaches the BARs and config space through sysfs.
 *
 * Why not VFIO: the Debian kernel is built without CONFIG_VFIO_NOIOMMU, so
 * vfio-pci needs an IOMMU group, and dvmm emulates no IOMMU.
 *
 * What it checks:
 *   1. INTx: a copy between two locked pages (physical addresses from
 *      /proc/self/pagemap) completes, raises INTx (the blocking read on
 *      /dev/uioN returns) and DST equals SRC.
 *   2. A copy from outside guest RAM sets STATUS.ERROR and interrupts.
 *   3. MSI-X: entry 0 is aimed at an x86 vector that has no handler in the
 *      guest kernel, first masked: the copy leaves PBA bit 0 set; unmasking
 *      delivers the message, which the guest kernel reports as
 *      "__common_interrupt: 0.<vector> No irq handler for vector" (so the
 *      message really reached the guest's local APIC). A second copy with
 *      the vector unmasked and an error copy (vector 1) are counted the same way.
 *
 * Prints one "copy-engine-user: PASS" or "copy-engine-user: FAIL: <why>" line
 * and exits 0 / 1. Build: gcc -static -O2 -o copy_engine_user copy_engine_user.c
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/pci_regs.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Device identity and BAR 0 registers (see examples/copy_engine.ts). */
#define VENDOR_ID 0x1b36
#define DEVICE_ID 0x00f1
#define COPY_ENGINE_ID 0x434f5059u
enum {
	REG_ID = 0x00,
	REG_SRC_LO = 0x04,
	REG_SRC_HI = 0x08,
	REG_DST_LO = 0x0c,
	REG_DST_HI = 0x10,
	REG_LEN = 0x14,
	REG_CTRL = 0x18,
	REG_STATUS = 0x1c,
	REG_COMPLETED = 0x20,
	REG_ERRORS = 0x24,
};
#define CTRL_START 1u
#define STATUS_DONE 1u
#define STATUS_ERROR 2u
#define BAR_SIZE 4096
#define MSIX_TABLE_OFFSET 0x000 /* in BAR 2 */
#define MSIX_PBA_OFFSET 0x800   /* in BAR 2 */

/* MSI-X targets: CPU 0 (physical destination), vectors without a handler. */
#define MSI_ADDRESS 0xfee00000u
#define VECTOR_DONE 0xdc
#define VECTOR_ERROR 0xdd

/* A far address no guest RAM reaches. */
#define BAD_ADDRESS 0x7f0000000000ull

static char dev_dir[300];
static int cfg_fd = -1;
static volatile uint32_t *regs;
static volatile uint32_t *msix_bar;

static void fail(const char *fmt, ...)
{
	va_list ap;
	printf("copy-engine-user: FAIL: ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	exit(1);
}

static void info(const char *fmt, ...)
{
	va_list ap;
	printf("copy-engine-user: ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
}

static uint32_t reg_read(unsigned reg) { return regs[reg / 4]; }
static void reg_write(unsigned reg, uint32_t v) { regs[reg / 4] = v; }

static unsigned read_hex_file(const char *name)
{
	char path[512], buf[32] = {0};
	snprintf(path, sizeof path, "%s/%s", dev_dir, name);
	int fd = open(path, O_RDONLY);
	if (fd < 0 || read(fd, buf, sizeof buf - 1) <= 0) fail("read %s: %s", path, strerror(errno));
	close(fd);
	return (unsigned)strtoul(buf, NULL, 16);
}

/* Config space through sysfs (root may write it). */
static uint32_t cfg_read(unsigned off, unsigned width)
{
	uint32_t v = 0;
	if (pread(cfg_fd, &v, width, off) != (ssize_t)width) fail("config read 0x%x: %s", off, strerror(errno));
	return v;
}

static void cfg_write(unsigned off, uint32_t v, unsigned width)
{
	if (pwrite(cfg_fd, &v, width, off) != (ssize_t)width) fail("config write 0x%x: %s", off, strerror(errno));
}

static volatile uint32_t *map_bar(int index)
{
	char path[512];
	snprintf(path, sizeof path, "%s/resource%d", dev_dir, index);
	int fd = open(path, O_RDWR | O_SYNC);
	if (fd < 0) fail("open %s: %s", path, strerror(errno));
	void *p = mmap(NULL, BAR_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) fail("mmap %s: %s", path, strerror(errno));
	close(fd);
	return p;
}

/* Find 0000:00:xx.0 with our vendor/device ids. */
static void find_device(void)
{
	DIR *d = opendir("/sys/bus/pci/devices");
	if (!d) fail("opendir /sys/bus/pci/devices: %s", strerror(errno));
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.') continue;
		snprintf(dev_dir, sizeof dev_dir, "/sys/bus/pci/devices/%s", e->d_name);
		if (read_hex_file("vendor") == VENDOR_ID && read_hex_file("device") == DEVICE_ID) {
			closedir(d);
			return;
		}
	}
	fail("no PCI device %04x:%04x", VENDOR_ID, DEVICE_ID);
}

/* The uio node uio_pci_generic made for the device. */
static int open_uio(void)
{
	char path[512];
	snprintf(path, sizeof path, "%s/uio", dev_dir);
	DIR *d = opendir(path);
	if (!d) fail("%s missing: is the device bound to uio_pci_generic?", path);
	struct dirent *e;
	while ((e = readdir(d))) {
		if (strncmp(e->d_name, "uio", 3) != 0) continue;
		char node[300];
		snprintf(node, sizeof node, "/dev/%s", e->d_name);
		closedir(d);
		int fd = open(node, O_RDWR);
		if (fd < 0) fail("open %s: %s", node, strerror(errno));
		return fd;
	}
	fail("no uio node under %s", path);
	return -1;
}

/* Guest physical address of the (locked, present) page holding `p`. */
static uint64_t phys_addr(void *p)
{
	int fd = open("/proc/self/pagemap", O_RDONLY);
	if (fd < 0) fail("open pagemap: %s", strerror(errno));
	long page = sysconf(_SC_PAGESIZE);
	uint64_t entry;
	off_t at = (off_t)((uintptr_t)p / page) * 8;
	if (pread(fd, &entry, 8, at) != 8) fail("read pagemap: %s", strerror(errno));
	close(fd);
	if (!(entry >> 63)) fail("page %p not present", p);
	uint64_t pfn = entry & ((1ull << 55) - 1);
	if (pfn == 0) fail("pagemap hides PFNs (not root?)");
	return pfn * page + ((uintptr_t)p % page);
}

/*
 * INTx: unmask at the device. uio_pci_generic's handler masks INTx with
 * Command.INTX_DISABLE when it fires and has no irqcontrol (write() on the
 * uio node fails with ENOSYS): userspace clears the bit in config space.
 */
static void intx_unmask(void)
{
	cfg_write(PCI_COMMAND, cfg_read(PCI_COMMAND, 2) & ~PCI_COMMAND_INTX_DISABLE, 2);
}

/* Wait for one INTx (uio_pci_generic masks it again on arrival). Returns the event count. */
static uint32_t uio_wait(int uio)
{
	struct pollfd pfd = {.fd = uio, .events = POLLIN};
	int r = poll(&pfd, 1, 5000);
	if (r <= 0) fail("no INTx within 5 s (STATUS 0x%x)", reg_read(REG_STATUS));
	uint32_t count;
	if (read(uio, &count, 4) != 4) fail("uio read: %s", strerror(errno));
	return count;
}

/*
 * Program a copy and ring the doorbell. MMIO writes are posted (on dvmm as on
 * PCI): read a register (STATUS) before looking at DST or expecting the MSI.
 */
static void start_copy(uint64_t src, uint64_t dst, uint32_t len)
{
	reg_write(REG_SRC_LO, (uint32_t)src);
	reg_write(REG_SRC_HI, (uint32_t)(src >> 32));
	reg_write(REG_DST_LO, (uint32_t)dst);
	reg_write(REG_DST_HI, (uint32_t)(dst >> 32));
	reg_write(REG_LEN, len);
	reg_write(REG_CTRL, CTRL_START);
}

static void fill(uint8_t *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++) p[i] = (uint8_t)(i * 13 + seed);
}

/* How often the kernel log says "<cpu>.<vector> No irq handler for vector" for `vector`. */
static int unhandled_count(int vector)
{
	static char buf[1 << 20];
	int n = (int)syscall(SYS_syslog, 3 /* SYSLOG_ACTION_READ_ALL */, buf, (int)sizeof buf - 1);
	if (n < 0) fail("syslog read: %s", strerror(errno));
	buf[n] = 0;
	char needle[64];
	snprintf(needle, sizeof needle, "0.%d No irq handler for vector", vector);
	int count = 0;
	for (char *p = buf; (p = strstr(p, needle)); p += strlen(needle)) count++;
	return count;
}

/* Wait up to 2 s for `vector`'s count to reach `want`. */
static void expect_unhandled(int vector, int want, const char *what)
{
	int got = 0;
	for (int i = 0; i < 200; i++) {
		got = unhandled_count(vector);
		if (got >= want) break;
		usleep(10000);
	}
	if (got != want) fail("%s: vector 0x%x delivered %d times, want %d", what, vector, got, want);
}

static void msix_entry(int v, uint32_t addr, uint32_t data, int masked)
{
	volatile uint32_t *e = msix_bar + (MSIX_TABLE_OFFSET + 16 * v) / 4;
	e[0] = addr;
	e[1] = 0;
	e[2] = data;
	e[3] = masked ? PCI_MSIX_ENTRY_CTRL_MASKBIT : 0;
}

static uint32_t msix_pba(void) { return msix_bar[MSIX_PBA_OFFSET / 4]; }

int main(void)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	find_device();
	info("device %s", dev_dir);
	char path[512];
	snprintf(path, sizeof path, "%s/config", dev_dir);
	cfg_fd = open(path, O_RDWR);
	if (cfg_fd < 0) fail("open %s: %s", path, strerror(errno));
	int uio = open_uio();
	regs = map_bar(0);
	msix_bar = map_bar(2);

	/* Memory decode and bus mastering (DMA and MSI need it; uio_pci_generic does not set it). */
	cfg_write(PCI_COMMAND, cfg_read(PCI_COMMAND, 2) | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER, 2);
	if (reg_read(REG_ID) != COPY_ENGINE_ID) fail("ID register 0x%08x", reg_read(REG_ID));

	/* Two locked pages: SRC and DST of every copy (one page each: no contiguity needed). */
	long page = sysconf(_SC_PAGESIZE);
	uint8_t *buf = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (buf == MAP_FAILED) fail("mmap buffer: %s", strerror(errno));
	if (mlock(buf, 2 * page) != 0) fail("mlock: %s", strerror(errno));
	uint8_t *src = buf, *dst = buf + page;
	memset(buf, 0, 2 * page);
	uint64_t src_pa = phys_addr(src), dst_pa = phys_addr(dst);
	info("src at 0x%llx, dst at 0x%llx", (unsigned long long)src_pa, (unsigned long long)dst_pa);

	/* 1. INTx completion. */
	uint32_t done0 = reg_read(REG_COMPLETED), err0 = reg_read(REG_ERRORS);
	fill(src, page, 1);
	intx_unmask();
	start_copy(src_pa, dst_pa, (uint32_t)page);
	uint32_t events = uio_wait(uio);
	if (reg_read(REG_STATUS) != STATUS_DONE) fail("INTx copy: STATUS 0x%x", reg_read(REG_STATUS));
	if (memcmp(src, dst, page) != 0) fail("INTx copy: DST differs from SRC");
	if (reg_read(REG_COMPLETED) != done0 + 1) fail("INTx copy: COMPLETED %u", reg_read(REG_COMPLETED));
	reg_write(REG_STATUS, STATUS_DONE);
	info("INTx copy of %ld bytes ok (uio events %u)", page, events);

	/* 2. A copy from outside RAM fails cleanly, with an interrupt. */
	intx_unmask();
	memset(dst, 0x5a, page);
	start_copy(BAD_ADDRESS, dst_pa, 64);
	uio_wait(uio);
	if (reg_read(REG_STATUS) != STATUS_ERROR) fail("bad copy: STATUS 0x%x", reg_read(REG_STATUS));
	if (reg_read(REG_ERRORS) != err0 + 1) fail("bad copy: ERRORS %u", reg_read(REG_ERRORS));
	if (dst[0] != 0x5a) fail("bad copy: DST was written");
	reg_write(REG_STATUS, STATUS_ERROR);
	info("copy from 0x%llx failed with STATUS.ERROR and INTx", BAD_ADDRESS);
	intx_unmask();

	/* 3. MSI-X: find the capability, program both vectors, enable. */
	unsigned cap = cfg_read(PCI_CAPABILITY_LIST, 1);
	while (cap && cfg_read(cap, 1) != PCI_CAP_ID_MSIX) cap = cfg_read(cap + 1, 1);
	if (!cap) fail("no MSI-X capability");
	unsigned ctl = cfg_read(cap + PCI_MSIX_FLAGS, 2);
	if ((ctl & PCI_MSIX_FLAGS_QSIZE) + 1 < 2) fail("MSI-X table size %u", (ctl & PCI_MSIX_FLAGS_QSIZE) + 1);
	int base_done = unhandled_count(VECTOR_DONE), base_error = unhandled_count(VECTOR_ERROR);
	msix_entry(0, MSI_ADDRESS, VECTOR_DONE, 1);
	msix_entry(1, MSI_ADDRESS, VECTOR_ERROR, 0);
	cfg_write(cap + PCI_MSIX_FLAGS, ctl | PCI_MSIX_FLAGS_ENABLE, 2);

	/* Masked vector 0: the copy completes, the message waits in the PBA. */
	fill(src, page, 2);
	start_copy(src_pa, dst_pa, (uint32_t)page);
	if (reg_read(REG_STATUS) != STATUS_DONE) fail("MSI-X copy: STATUS 0x%x", reg_read(REG_STATUS));
	if (memcmp(src, dst, page) != 0) fail("MSI-X copy: DST differs from SRC");
	if (!(msix_pba() & 1)) fail("masked vector 0: PBA 0x%x, want bit 0", msix_pba());
	usleep(100000);
	if (unhandled_count(VECTOR_DONE) != base_done) fail("masked vector 0 was delivered");
	reg_write(REG_STATUS, STATUS_DONE);
	/* Unmasking delivers it. */
	msix_entry(0, MSI_ADDRESS, VECTOR_DONE, 0);
	if (msix_pba() & 1) fail("PBA bit 0 still set after unmask");
	expect_unhandled(VECTOR_DONE, base_done + 1, "pending vector 0 after unmask");
	info("MSI-X vector 0 held pending while masked, delivered on unmask (vector 0x%x)", VECTOR_DONE);

	/* Unmasked: delivered at once. */
	fill(src, page, 3);
	start_copy(src_pa, dst_pa, (uint32_t)page);
	if (reg_read(REG_STATUS) != STATUS_DONE) fail("second MSI-X copy: STATUS 0x%x", reg_read(REG_STATUS));
	if (memcmp(src, dst, page) != 0) fail("second MSI-X copy: DST differs");
	reg_write(REG_STATUS, STATUS_DONE);
	expect_unhandled(VECTOR_DONE, base_done + 2, "vector 0 on completion");
	/* An error raises vector 1. */
	start_copy(src_pa, BAD_ADDRESS, 16);
	if (reg_read(REG_STATUS) != STATUS_ERROR) fail("MSI-X bad copy: STATUS 0x%x", reg_read(REG_STATUS));
	reg_write(REG_STATUS, STATUS_ERROR);
	expect_unhandled(VECTOR_ERROR, base_error + 1, "vector 1 on error");
	info("MSI-X vector 0 on completion and vector 1 on error delivered");

	/* Back to INTx, device quiet. */
	cfg_write(cap + PCI_MSIX_FLAGS, ctl & ~PCI_MSIX_FLAGS_ENABLE, 2);
	info("completed %u, errors %u", reg_read(REG_COMPLETED), reg_read(REG_ERRORS));
	printf("copy-engine-user: PASS\n");
	return 0;
}
