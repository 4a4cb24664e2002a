; PCI core guest test: a real-mode program that drives two register-file
; devices (00:01.0 "A" and 00:02.0 "B", one 4 KiB mem32 BAR each, placed below
; 1 MiB by the test) through configuration mechanism #1 (0xCF8/0xCFC) and reads
; their ID registers through MMIO to see which device answers where.
; Every observation is reported as one 32-bit OUT to port 0xE9.
bits 16
org 0x1000

REPORT  equ 0xe9
CFG     equ 0x80000000
DEV_A   equ (1 << 11)
DEV_B   equ (2 << 11)
BAR0    equ 0x10
COMMAND equ 0x04

start:
    ; 1. identities
    mov eax, CFG | DEV_A
    call cfg_read
    call report                 ; A vendor:device
    mov eax, CFG | DEV_B
    call cfg_read
    call report                 ; B vendor:device

    ; 2. sizing probes on A's BAR 0, exact and masked, then restore
    mov eax, CFG | DEV_A | BAR0
    call cfg_read
    mov [bar_a], eax
    call report                 ; A's BAR as assigned
    mov eax, CFG | DEV_A | BAR0
    mov ebx, 0xffffffff
    call cfg_write
    mov eax, CFG | DEV_A | BAR0
    call cfg_read
    call report                 ; ~(size-1) with type bits
    mov eax, CFG | DEV_A | BAR0
    mov ebx, 0xfffffff0
    call cfg_write
    mov eax, CFG | DEV_A | BAR0
    call cfg_read
    call report                 ; the same for the masked probe
    mov eax, CFG | DEV_A | BAR0
    mov ebx, [bar_a]
    call cfg_write
    mov eax, CFG | DEV_B | BAR0
    call cfg_read
    mov [bar_b], eax

    ; 3. each device answers at its own BAR (sizing did not disturb the mapping)
    mov eax, [bar_a]
    call mmio_read
    call report                 ; ID of A
    mov eax, [bar_b]
    call mmio_read
    call report                 ; ID of B

    ; 4. memory decode off on A with a 2-byte write to Command, then on with a 1-byte write
    mov eax, CFG | DEV_A | COMMAND
    mov dx, 0xcf8
    out dx, eax
    mov dx, 0xcfc
    xor ax, ax
    out dx, ax
    mov eax, [bar_a]
    call mmio_read
    call report                 ; nothing there: all ones
    mov eax, CFG | DEV_A | COMMAND
    mov dx, 0xcf8
    out dx, eax
    mov dx, 0xcfc
    mov al, 2
    out dx, al
    mov eax, [bar_a]
    call mmio_read
    call report                 ; A again

    ; 5. move B's BAR on top of A's
    mov eax, CFG | DEV_B | BAR0
    mov ebx, [bar_a]
    call cfg_write
    mov eax, [bar_a]
    call mmio_read
    call report                 ; B answers at A's address
    mov eax, [bar_b]
    call mmio_read
    call report                 ; B's old place is empty

    ; 6. and back: A must answer again
    mov eax, CFG | DEV_B | BAR0
    mov ebx, [bar_b]
    call cfg_write
    mov eax, [bar_a]
    call mmio_read
    call report                 ; A
    mov eax, [bar_b]
    call mmio_read
    call report                 ; B
    hlt

; eax = config address -> eax = dword
cfg_read:
    mov dx, 0xcf8
    out dx, eax
    mov dx, 0xcfc
    in eax, dx
    ret

; eax = config address, ebx = dword to write
cfg_write:
    mov dx, 0xcf8
    out dx, eax
    mov dx, 0xcfc
    mov eax, ebx
    out dx, eax
    ret

; eax = physical address below 1 MiB, 16-byte aligned -> eax = dword there
mmio_read:
    shr eax, 4
    mov es, ax
    mov eax, [es:0]
    ret

report:
    mov dx, REPORT
    out dx, eax
    ret

bar_a: dd 0
bar_b: dd 0
