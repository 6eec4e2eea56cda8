; bootlab KVM probe payload: a 512-byte BIOS boot sector (see src/tools/qemu/kvm_probe.rs).
;
; Why this shape: on nested "PVM" hosts (/dev/kvm from kvm_pvm) SeaBIOS and a kernel's real-mode
; setup run, but a stock kernel stalls once it leaves real mode and turns on paging for its 64-bit
; decompressor, or dies with "KVM internal error ... emulation failure" (cmpxchg16b / xrstor).
; So the payload walks the same road: real mode -> 32-bit protected mode -> PAE paging + long
; mode, then cmpxchg16b and xsave/xrstor, then a memory-touching loop, and reports through
; COM1 and the isa-debug-exit device.
;
; bootlab runs it as the firmware itself (see kvm-probe-reset.asm: a reset stub copies this sector
; to 0x7C00), so no SeaBIOS time hides the answer; it is still a valid boot sector for any BIOS.
;
; Serial transcript on success: "RPLCX", 12 dots (loop progress), 16 hex digits (loop checksum),
; then "\n". The checksum is recomputed in Rust (kvm_probe::expected_checksum) to prove the run.
;   R real mode, P protected mode, L long mode with paging, C cmpxchg16b, X xsave/xrstor
;   (C and X print even when the CPU lacks the feature: the step is then skipped).
; Exit: writes EXIT_VALUE to port 0xf4 -> QEMU exits with (EXIT_VALUE << 1) | 1 = 33.
;
; Build: nasm -f bin -o kvm-probe.bin kvm-probe.asm; the bytes are embedded in
; src/tools/qemu/kvm_probe.rs (PAYLOAD) so building bootlab needs no nasm; a test checks they match.

bits 16
org 0x7c00

COM1        equ 0x3f8
EXIT_PORT   equ 0xf4
EXIT_VALUE  equ 0x10
ITERATIONS  equ 48 << 20       ; ~0.7 s of work under TCG, tens of milliseconds under working KVM
DOT_EVERY   equ (1 << 22) - 1  ; a '.' on COM1 every 4 Mi iterations: 12 in all, shows progress
BUF         equ 0x100000       ; 1 MiB scratch buffer the loop touches (needs A20 + paging)
PML4        equ 0x1000
PDPT        equ 0x2000
PD          equ 0x3000
XSAVE_AREA  equ 0x5000         ; 64-byte aligned
CX16_SLOT   equ 0x4000         ; 16-byte aligned

start:
    cli
    xor ax, ax
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov sp, 0x7c00
    mov dx, COM1
    mov al, 'R'
    out dx, al
    in al, 0x92                 ; fast A20
    or al, 2
    and al, 0xfe
    out 0x92, al
    lgdt [gdt_desc]
    mov eax, cr0
    or eax, 1
    mov cr0, eax
    jmp 0x08:pm32

bits 32
pm32:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov esp, 0x7c00
    mov dx, COM1
    mov al, 'P'
    out dx, al
    mov edi, PML4               ; identity-map the first 2 MiB with one large page
    xor eax, eax
    mov ecx, 3 * 1024
    rep stosd
    mov dword [PML4], PDPT | 3
    mov dword [PDPT], PD | 3
    mov dword [PD], 0x83
    mov eax, cr4
    or eax, 1 << 5              ; PAE
    mov cr4, eax
    mov eax, PML4
    mov cr3, eax
    mov ecx, 0xC0000080         ; EFER.LME
    rdmsr
    or eax, 1 << 8
    wrmsr
    mov eax, cr0
    or eax, 1 << 31             ; paging on: long mode active
    mov cr0, eax
    jmp 0x18:lm64

bits 64
lm64:
    mov dx, COM1
    mov al, 'L'
    out dx, al
    mov eax, 1
    cpuid
    mov r12d, ecx               ; CPUID.1:ECX feature bits
    bt r12d, 13                 ; CX16
    jnc .cx16_done
    xor eax, eax
    xor edx, edx
    mov ebx, 0x1234
    xor ecx, ecx
    cmpxchg16b [CX16_SLOT]      ; slot is zero: succeeds and stores rcx:rbx
.cx16_done:
    mov dx, COM1
    mov al, 'C'
    out dx, al
    bt r12d, 26                 ; XSAVE
    jnc .xsave_done
    mov rax, cr4
    bts rax, 18                 ; OSXSAVE
    mov cr4, rax
    xor ecx, ecx
    xgetbv                      ; current XCR0 in edx:eax is the mask to save
    xsave [XSAVE_AREA]
    xrstor [XSAVE_AREA]
.xsave_done:
    mov dx, COM1
    mov al, 'X'
    out dx, al

    mov edi, BUF                ; zero the buffer: the checksum must not depend on leftovers
    xor eax, eax
    mov ecx, (1 << 20) / 8
    rep stosq
    mov rax, 0x9E3779B97F4A7C15 ; xorshift64 state
    mov ecx, ITERATIONS
.loop:
    mov rbx, rax
    shl rbx, 13
    xor rax, rbx
    mov rbx, rax
    shr rbx, 7
    xor rax, rbx
    mov rbx, rax
    shl rbx, 17
    xor rax, rbx
    mov rbx, rax
    and ebx, 0xFFFF8
    add [BUF + rbx], rax
    add rax, [BUF + rbx]
    dec ecx
    test ecx, DOT_EVERY
    jnz .loop
    push rax
    mov al, '.'
    out dx, al
    pop rax
    test ecx, ecx
    jnz .loop

    mov rbx, rax                ; print the checksum: 16 hex digits
    mov ecx, 16
    mov dx, COM1
.hex:
    rol rbx, 4
    mov al, bl
    and al, 0x0f
    add al, '0'
    cmp al, '9'
    jbe .digit
    add al, 'a' - '9' - 1
.digit:
    out dx, al
    dec ecx
    jnz .hex
    mov al, 10
    out dx, al

    mov eax, EXIT_VALUE
    out EXIT_PORT, eax
.halt:
    hlt
    jmp .halt

align 8
gdt:
    dq 0
    dq 0x00CF9A000000FFFF       ; 0x08: 32-bit code
    dq 0x00CF92000000FFFF       ; 0x10: data
    dq 0x00AF9A000000FFFF       ; 0x18: 64-bit code
gdt_desc:
    dw gdt_desc - gdt - 1
    dd gdt

times 510 - ($ - $$) db 0
dw 0xAA55
