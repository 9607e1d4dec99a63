//go:build amd64 && !purego

#include "textflag.h"

// The arguments (rk *byte, rounds int, dst, src, tw *byte, groups int).
#define ARGS \
	MOVQ rk+0(FP), AX; \
	MOVQ rounds+8(FP), CX; \
	MOVQ dst+16(FP), DI; \
	MOVQ src+24(FP), SI; \
	MOVQ tw+32(FP), DX; \
	MOVQ groups+40(FP), BX

// OP X8 into each of X0..X7.
#define ROUND8(OP) \
	OP X8, X0; \
	OP X8, X1; \
	OP X8, X2; \
	OP X8, X3; \
	OP X8, X4; \
	OP X8, X5; \
	OP X8, X6; \
	OP X8, X7

// X0..X7 ^= the eight tweaks at DX.
#define TWEAK8 \
	MOVOU 0(DX), X8; \
	PXOR X8, X0; \
	MOVOU 16(DX), X8; \
	PXOR X8, X1; \
	MOVOU 32(DX), X8; \
	PXOR X8, X2; \
	MOVOU 48(DX), X8; \
	PXOR X8, X3; \
	MOVOU 64(DX), X8; \
	PXOR X8, X4; \
	MOVOU 80(DX), X8; \
	PXOR X8, X5; \
	MOVOU 96(DX), X8; \
	PXOR X8, X6; \
	MOVOU 112(DX), X8; \
	PXOR X8, X7

// X0..X7 = the eight blocks at SI ^ their tweaks ^ round key 0; R8 = round
// key 1, R9 = the rounds before the last.
#define XMM_IN \
	MOVOU 0(SI), X0; \
	MOVOU 16(SI), X1; \
	MOVOU 32(SI), X2; \
	MOVOU 48(SI), X3; \
	MOVOU 64(SI), X4; \
	MOVOU 80(SI), X5; \
	MOVOU 96(SI), X6; \
	MOVOU 112(SI), X7; \
	TWEAK8; \
	MOVOU (AX), X8; \
	ROUND8(PXOR); \
	LEAQ 16(AX), R8; \
	LEAQ -1(CX), R9

// The last round, the tweaks again, the store; advance, BX-- (sets Z).
#define XMM_OUT(LAST) \
	MOVOU (R8), X8; \
	ROUND8(LAST); \
	TWEAK8; \
	MOVOU X0, 0(DI); \
	MOVOU X1, 16(DI); \
	MOVOU X2, 32(DI); \
	MOVOU X3, 48(DI); \
	MOVOU X4, 64(DI); \
	MOVOU X5, 80(DI); \
	MOVOU X6, 96(DI); \
	MOVOU X7, 112(DI); \
	ADDQ $128, SI; \
	ADDQ $128, DI; \
	ADDQ $128, DX; \
	DECQ BX

// The next round key; R9-- (sets Z).
#define NEXT_ROUND \
	ADDQ $16, R8; \
	DECQ R9

// The functions below compute dst[i] = AES(src[i] ^ tw[i]) ^ tw[i] over
// groups of eight 16-byte blocks, the eight independent AES-NI chains
// interleaved round by round so that the instructions' latencies overlap
// (one block at a time, as cipher.Block.Encrypt does, waits out each
// round's latency). rk holds rounds+1 round keys; for decryption they are
// the equivalent inverse cipher's (reversed, InvMixColumns applied to the
// inner ones).

// func xtsEncryptAsm(rk *byte, rounds int, dst, src, tw *byte, groups int)
TEXT ·xtsEncryptAsm(SB), NOSPLIT, $0-48
	ARGS
	TESTQ BX, BX
	JZ done

loop:
	XMM_IN

round:
	MOVOU (R8), X8
	ROUND8(AESENC)
	NEXT_ROUND
	JNZ round
	XMM_OUT(AESENCLAST)
	JNZ loop

done:
	RET

// func xtsDecryptAsm(rk *byte, rounds int, dst, src, tw *byte, groups int)
TEXT ·xtsDecryptAsm(SB), NOSPLIT, $0-48
	ARGS
	TESTQ BX, BX
	JZ done

loop:
	XMM_IN

round:
	MOVOU (R8), X8
	ROUND8(AESDEC)
	NEXT_ROUND
	JNZ round
	XMM_OUT(AESDECLAST)
	JNZ loop

done:
	RET


// The AVX-512 variants below do the same with VAES on ZMM registers, four
// blocks per register and eight registers: groups of 32 blocks, 512 bytes,
// the smallest sector. They compute the tweaks themselves from the first
// four at tw (T, Tα, Tα², Tα³): register Z16+i holds those times α^(4i),
// and the next group starts from them times α^32. Multiplying by α^k
// (k <= 32) in each 128-bit lane: shift both 64-bit halves left by k, carry
// the low half's top k bits into the high half, and fold the high half's
// top k bits back into the low half times x^7 + x^2 + x + 1 (0x87, in
// every low half of Z31) with a carry-less multiply. VPTERNLOGQ $0x96 is a
// three-way XOR.

// DST = Z24·α^K in each 128-bit lane; clobbers Z29, Z30.
#define MUL_ALPHA(K, DST) \
	VPSRLQ $(64-K), Z24, Z30; \
	VPSLLQ $K, Z24, DST; \
	VPSLLDQ $8, Z30, Z29; \
	VPXORQ Z29, DST, DST; \
	VPCLMULQDQ $0x01, Z31, Z30, Z29; \
	VPXORQ Z29, DST, DST

// ARGS, Z24 = the first four tweaks, Z31 = 0x87 in every quadword.
#define ZMM_ARGS \
	ARGS; \
	VMOVDQU64 (DX), Z24; \
	MOVQ $0x87, R10; \
	VPBROADCASTQ R10, Z31

// Z16..Z23 = this group's tweaks, Z24 the next group's first four; Z0..Z7 =
// the 32 blocks at SI ^ their tweaks ^ round key 0; R8, R9 as in XMM_IN.
#define ZMM_IN \
	VMOVDQU64 Z24, Z16; \
	MUL_ALPHA(4, Z17); \
	MUL_ALPHA(8, Z18); \
	MUL_ALPHA(12, Z19); \
	MUL_ALPHA(16, Z20); \
	MUL_ALPHA(20, Z21); \
	MUL_ALPHA(24, Z22); \
	MUL_ALPHA(28, Z23); \
	MUL_ALPHA(32, Z24); \
	VBROADCASTI32X4 (AX), Z8; \
	VMOVDQU64 0(SI), Z0; \
	VPTERNLOGQ $0x96, Z8, Z16, Z0; \
	VMOVDQU64 64(SI), Z1; \
	VPTERNLOGQ $0x96, Z8, Z17, Z1; \
	VMOVDQU64 128(SI), Z2; \
	VPTERNLOGQ $0x96, Z8, Z18, Z2; \
	VMOVDQU64 192(SI), Z3; \
	VPTERNLOGQ $0x96, Z8, Z19, Z3; \
	VMOVDQU64 256(SI), Z4; \
	VPTERNLOGQ $0x96, Z8, Z20, Z4; \
	VMOVDQU64 320(SI), Z5; \
	VPTERNLOGQ $0x96, Z8, Z21, Z5; \
	VMOVDQU64 384(SI), Z6; \
	VPTERNLOGQ $0x96, Z8, Z22, Z6; \
	VMOVDQU64 448(SI), Z7; \
	VPTERNLOGQ $0x96, Z8, Z23, Z7; \
	LEAQ 16(AX), R8; \
	LEAQ -1(CX), R9

// One round with the key at R8 on Z0..Z7.
#define ROUNDZ(OP) \
	VBROADCASTI32X4 (R8), Z8; \
	OP Z8, Z0, Z0; \
	OP Z8, Z1, Z1; \
	OP Z8, Z2, Z2; \
	OP Z8, Z3, Z3; \
	OP Z8, Z4, Z4; \
	OP Z8, Z5, Z5; \
	OP Z8, Z6, Z6; \
	OP Z8, Z7, Z7

// The last round, the tweaks again, the store; advance, BX-- (sets Z).
#define ZMM_OUT(LAST) \
	VBROADCASTI32X4 (R8), Z8; \
	LAST Z8, Z0, Z0; \
	VPXORQ Z16, Z0, Z0; \
	VMOVDQU64 Z0, 0(DI); \
	LAST Z8, Z1, Z1; \
	VPXORQ Z17, Z1, Z1; \
	VMOVDQU64 Z1, 64(DI); \
	LAST Z8, Z2, Z2; \
	VPXORQ Z18, Z2, Z2; \
	VMOVDQU64 Z2, 128(DI); \
	LAST Z8, Z3, Z3; \
	VPXORQ Z19, Z3, Z3; \
	VMOVDQU64 Z3, 192(DI); \
	LAST Z8, Z4, Z4; \
	VPXORQ Z20, Z4, Z4; \
	VMOVDQU64 Z4, 256(DI); \
	LAST Z8, Z5, Z5; \
	VPXORQ Z21, Z5, Z5; \
	VMOVDQU64 Z5, 320(DI); \
	LAST Z8, Z6, Z6; \
	VPXORQ Z22, Z6, Z6; \
	VMOVDQU64 Z6, 384(DI); \
	LAST Z8, Z7, Z7; \
	VPXORQ Z23, Z7, Z7; \
	VMOVDQU64 Z7, 448(DI); \
	ADDQ $512, SI; \
	ADDQ $512, DI; \
	DECQ BX

// func xtsEncryptVAES(rk *byte, rounds int, dst, src, tw *byte, groups int)
TEXT ·xtsEncryptVAES(SB), NOSPLIT, $0-48
	ZMM_ARGS
	TESTQ BX, BX
	JZ done

loop:
	ZMM_IN

round:
	ROUNDZ(VAESENC)
	NEXT_ROUND
	JNZ round
	ZMM_OUT(VAESENCLAST)
	JNZ loop

done:
	VZEROUPPER
	RET

// func xtsDecryptVAES(rk *byte, rounds int, dst, src, tw *byte, groups int)
TEXT ·xtsDecryptVAES(SB), NOSPLIT, $0-48
	ZMM_ARGS
	TESTQ BX, BX
	JZ done

loop:
	ZMM_IN

round:
	ROUNDZ(VAESDEC)
	NEXT_ROUND
	JNZ round
	ZMM_OUT(VAESDECLAST)
	JNZ loop

done:
	VZEROUPPER
	RET
