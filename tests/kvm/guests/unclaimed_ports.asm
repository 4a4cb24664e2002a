; Port accesses to nothing: a 16-bit real-mode program, loaded at 0x1000 (CS=DS=ES=0).
;  1. reads a byte from 0x2f8 (COM2, absent), a word from 0x2e8 and a dword from 0x3e8, and a
;     two-byte string (rep insb) from 0x2e; writes 0x55 to 0x2e and a word to 0x4e (dropped);
;  2. reports each value read on port 0xe9 (the test's log device), low byte first;
;  3. halts.
bits 16
org 0x1000

start:
    cld
    mov dx, 0x2f8
    in al, dx
    out 0xe9, al
    mov dx, 0x2e8
    in ax, dx
    out 0xe9, al
    mov al, ah
    out 0xe9, al
    mov dx, 0x3e8
    in eax, dx
    out 0xe9, al
    shr eax, 24
    out 0xe9, al
    mov al, 0x55
    out 0x2e, al
    mov dx, 0x4e
    mov ax, 0x1234
    out dx, ax
    mov dx, 0x2e
    mov di, buffer
    mov cx, 2
    rep insb
    mov al, [buffer]
    out 0xe9, al
    mov al, [buffer + 1]
    out 0xe9, al
    hlt

buffer: db 0, 0
