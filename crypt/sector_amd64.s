//go:build amd64 && !purego

#include "textflag.h"

// X0..X7 = the eight blocks at SI.
#define LOAD8 \
	MOVOU 0(SI), X0; \
	MOVOU 16(SI), X1; \
	MOVOU 32(SI), X2; \
	MOVOU 48(SI), X3; \
	MOVOU 64(SI), X4; \
	MOVOU 80(SI), X5; \
	MOVOU 96(SI), X6; \
	MOVOU 112(SI), X7

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

#define STORE8 \
	MOVOU X0, 0(DI); \
	MOVOU X1, 16(DI); \
	MOVOU X2, 32(DI); \
	MOVOU X3, 48(DI); \
	MOVOU X4, 64(DI); \
	MOVOU X5, 80(DI); \
	MOVOU X6, 96(DI); \
	MOVOU X7, 112(DI)

// The functions below compute dst[i] = AES(src[i] ^ tw[i]) ^ tw[i] over
// groups of eight 16-byte blocks, the eight independent AES-NI chains
// interleaved round by round so that the instructions' latencies overlap
// (one block at a time, as cipher.Block.Encrypt does, waits out each
// round's latency). rk holds rounds+1 round keys; for decryption they are
// the equivalent inverse cipher's (reversed, InvMixColumns applied to the
// inner ones).

// func xtsEncryptAsm(rk *byte, rounds int, dst, src, tw *byte, groups int)
TEXT ·xtsEncryptAsm(SB), NOSPLIT, $0-48
	MOVQ rk+0(FP), AX
	MOVQ rounds+8(FP), CX
	MOVQ dst+16(FP), DI
	MOVQ src+24(FP), SI
	MOVQ tw+32(FP), DX
	MOVQ groups+40(FP), BX
	TESTQ BX, BX
	JZ done

loop:
	LOAD8
	TWEAK8
	MOVOU (AX), X8
	ROUND8(PXOR)
	LEAQ 16(AX), R8
	LEAQ -1(CX), R9

round:
	MOVOU (R8), X8
	ROUND8(AESENC)
	ADDQ $16, R8
	DECQ R9
	JNZ round
	MOVOU (R8), X8
	ROUND8(AESENCLAST)
	TWEAK8
	STORE8
	ADDQ $128, SI
	ADDQ $128, DI
	ADDQ $128, DX
	DECQ BX
	JNZ loop

done:
	RET

// func xtsDecryptAsm(rk *byte, rounds int, dst, src, tw *byte, groups int)
TEXT ·xtsDecryptAsm(SB), NOSPLIT, $0-48
	MOVQ rk+0(FP), AX
	MOVQ rounds+8(FP), CX
	MOVQ dst+16(FP), DI
	MOVQ src+24(FP), SI
	MOVQ tw+32(FP), DX
	MOVQ groups+40(FP), BX
	TESTQ BX, BX
	JZ done

loop:
	LOAD8
	TWEAK8
	MOVOU (AX), X8
	ROUND8(PXOR)
	LEAQ 16(AX), R8
	LEAQ -1(CX), R9

round:
	MOVOU (R8), X8
	ROUND8(AESDEC)
	ADDQ $16, R8
	DECQ R9
	JNZ round
	MOVOU (R8), X8
	ROUND8(AESDECLAST)
	TWEAK8
	STORE8
	ADDQ $128, SI
	ADDQ $128, DI
	ADDQ $128, DX
	DECQ BX
	JNZ loop

done:
	RET
