; Exit benchmark guest: 100,000 port writes (each one a KVM_EXIT_IO), then HLT.
; Loaded at 0x1000, entered in real mode with CS=0.
bits 16
org 0x1000

EXITS equ 100000
PORT  equ 0xe9

    mov ecx, EXITS
    mov dx, PORT
.loop:
    out dx, al
    inc al
    dec ecx
    jnz .loop
    hlt
