; bootlab KVM probe: the reset stub that lets the probe boot sector (kvm-probe.asm) run as the
; machine's firmware (`qemu -bios`), with no SeaBIOS in front of it.
;
; Why: under the nested PVM "KVM" on our machine kind SeaBIOS alone takes 3-11 s to reach a boot
; sector, which buried what the probe is about (leaving real mode) under firmware time. As the
; firmware, the payload runs a few milliseconds after QEMU starts, under KVM and TCG alike.
;
; The 64 KiB ROM image (built in kvm_probe.rs, firmware_image):
;   0x0000  the 512-byte boot sector (PAYLOAD)       -> visible at F000:0000 (0xF0000)
;   0x0200  this stub (RESET_STUB)                   -> F000:0200
;   0xFFF0  jmp 0xF000:0x0200 (RESET_JUMP)           -> the reset vector, 0xFFFFFFF0
; The stub copies the boot sector to 0000:7C00, where a BIOS would have loaded it, and jumps there.
;
; Build: nasm -f bin -o kvm-probe-reset.bin kvm-probe-reset.asm; the bytes are embedded in
; src/tools/qemu/kvm_probe.rs (RESET_STUB); a test checks they match.

bits 16
org 0x200

    cli
    xor ax, ax
    mov es, ax
    mov ss, ax
    mov sp, 0x7c00
    mov ax, 0xF000
    mov ds, ax
    xor si, si
    mov di, 0x7c00
    mov cx, 512
    cld
    rep movsb
    jmp 0x0000:0x7c00
