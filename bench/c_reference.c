/*
 * Reference for the exit benchmark: the same real-mode guest run by a minimal
 * C VMM (one vCPU, one memory slot, a KVM_RUN loop that counts port writes).
 * Usage: c_reference <guest.bin>. Prints "exits=N ns=T" for the run loop.
 */
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define LOAD 0x1000
#define MEM (64 * 1024)
#define PORT 0xe9

static void die(const char *what) { perror(what); exit(1); }

int main(int argc, char **argv) {
  if (argc != 2) { fprintf(stderr, "usage: %s guest.bin\n", argv[0]); return 2; }
  int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (kvm < 0) die("/dev/kvm");
  int vm = ioctl(kvm, KVM_CREATE_VM, 0);
  if (vm < 0) die("KVM_CREATE_VM");
  if (ioctl(vm, KVM_SET_TSS_ADDR, 0xfffbd000) < 0) die("KVM_SET_TSS_ADDR");
  uint8_t *mem = mmap(NULL, MEM, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (mem == MAP_FAILED) die("mmap");
  FILE *f = fopen(argv[1], "rb");
  if (!f) die(argv[1]);
  size_t n = fread(mem + LOAD, 1, MEM - LOAD, f);
  fclose(f);
  if (n == 0) die("empty guest");
  struct kvm_userspace_memory_region region = {
      .slot = 0, .guest_phys_addr = 0, .memory_size = MEM, .userspace_addr = (uint64_t)mem};
  if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0) die("KVM_SET_USER_MEMORY_REGION");
  int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
  if (vcpu < 0) die("KVM_CREATE_VCPU");
  int size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
  struct kvm_run *run = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
  if (run == MAP_FAILED) die("mmap kvm_run");
  struct kvm_sregs sregs;
  if (ioctl(vcpu, KVM_GET_SREGS, &sregs) < 0) die("KVM_GET_SREGS");
  sregs.cs.base = 0; sregs.cs.selector = 0;
  if (ioctl(vcpu, KVM_SET_SREGS, &sregs) < 0) die("KVM_SET_SREGS");
  struct kvm_regs regs = {.rip = LOAD, .rflags = 2, .rsp = LOAD};
  if (ioctl(vcpu, KVM_SET_REGS, &regs) < 0) die("KVM_SET_REGS");

  uint64_t exits = 0, sum = 0;
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (;;) {
    if (ioctl(vcpu, KVM_RUN, 0) < 0) die("KVM_RUN");
    if (run->exit_reason == KVM_EXIT_IO && run->io.port == PORT && run->io.direction == KVM_EXIT_IO_OUT) {
      sum += *((uint8_t *)run + run->io.data_offset);
      exits++;
    } else if (run->exit_reason == KVM_EXIT_HLT) {
      break;
    } else {
      fprintf(stderr, "unexpected exit %u\n", run->exit_reason);
      return 1;
    }
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  long long ns = (t1.tv_sec - t0.tv_sec) * 1000000000LL + (t1.tv_nsec - t0.tv_nsec);
  printf("exits=%llu ns=%lld sum=%llu\n", (unsigned long long)exits, ns, (unsigned long long)sum);
  return 0;
}
