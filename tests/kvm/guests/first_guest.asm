; dvmm's first guest: a 16-bit real-mode program.
; Loaded at 0x1000 and entered with CS=DS=ES=0, IP=0x1000.
;  1. writes a greeting to COM1's data port (0x3f8), one OUT per byte;
;  2. reads a byte from port 0x3f9 (the test device answers 0x2a) and echoes it as a decimal "42";
;  3. writes 0x12345678 to the test MMIO region (0xd0000), reads its ID register at +4,
;     writes that value plus one back at +8, and reads one byte at +0x10;
;  4. halts.
bits 16
org 0x1000

MMIO_SEG equ 0xd000            ; MMIO region at linear 0xd0000

start:
    cld
    mov dx, 0x3f8
    mov si, greeting
.next:
    lodsb
    test al, al
    jz .greeted
    out dx, al
    jmp .next
.greeted:
    inc dx                      ; port 0x3f9: the test device's "answer" register
    in al, dx                   ; expect 42
    dec dx
    aam                         ; AH = AL / 10, AL = AL % 10
    add ax, 0x3030              ; to ASCII digits
    xchg al, ah
    out dx, al                  ; tens
    mov al, ah
    out dx, al                  ; units
    mov al, 10
    out dx, al                  ; newline

    mov ax, MMIO_SEG
    mov es, ax
    mov dword [es:0x0], 0x12345678
    mov eax, [es:0x4]           ; ID register
    inc eax
    mov [es:0x8], eax           ; ID + 1
    mov bl, [es:0x10]           ; one-byte read
    mov [es:0x11], bl           ; one-byte write of what was read
    hlt

greeting: db "Hello from a dvmm guest!", 10, 0
