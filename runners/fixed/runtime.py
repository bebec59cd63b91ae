"""The C++ every generated fixed-point library starts with: ap_fixed's conversion rules on plain integers.

A value of type ap_(u)fixed<W, I, Q, O> is held as its raw integer (value * 2^F, F = W - I) in an
int32_t or int64_t. `requant` is the one conversion: an exact raw integer at FIN fractional bits
becomes the raw integer of the target type, rounding as Q says and then wrapping or saturating as O
says (the order ap_fixed_base applies them). `from_double` is the same for a double (weights as
hls4ml prints them, lookup-table entries, inputs). Every rule here is checked against Xilinx's own
ap_fixed headers in tests/runners/fixed/test_semantics.py.
"""

from __future__ import annotations

# Quantization and overflow modes, numbered as the generated code names them.
ROUNDING = ("TRN", "TRN_ZERO", "RND", "RND_ZERO", "RND_MIN_INF", "RND_INF", "RND_CONV")
OVERFLOW = ("WRAP", "SAT", "SAT_ZERO", "SAT_SYM")

HEADER = r"""
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

namespace yfx {

enum Rounding { TRN = 0, TRN_ZERO = 1, RND = 2, RND_ZERO = 3, RND_MIN_INF = 4, RND_INF = 5, RND_CONV = 6 };
enum Overflow { WRAP = 0, SAT = 1, SAT_ZERO = 2, SAT_SYM = 3 };

// Shift right by S > 0 with rounding mode Q; v is exact (no overflow happens here).
template <int S, int Q, typename T> inline T round_shift(T v) {
    static_assert(S > 0, "round_shift needs a positive shift");
    const T floor_ = v >> S;  // arithmetic shift: floor
    if constexpr (Q == TRN) {
        return floor_;
    } else {
        using U = std::make_unsigned_t<T>;
        const T rem = (T)((U)v & (((U)1 << S) - 1));
        const T half = (T)1 << (S - 1);
        if constexpr (Q == TRN_ZERO) return floor_ + (T)(v < 0 && rem != 0);
        if constexpr (Q == RND) return floor_ + (T)(rem >= half);
        if constexpr (Q == RND_ZERO) return floor_ + (T)(rem > half || (rem == half && v < 0));
        if constexpr (Q == RND_MIN_INF) return floor_ + (T)(rem > half);
        if constexpr (Q == RND_INF) return floor_ + (T)(rem > half || (rem == half && v >= 0));
        if constexpr (Q == RND_CONV) return floor_ + (T)(rem > half || (rem == half && (floor_ & 1)));
    }
}

template <int W, bool S, typename T> constexpr T lowest() { return S ? -((T)1 << (W - 1)) : (T)0; }
template <int W, bool S, typename T> constexpr T highest() {
    return S ? (T)(((std::make_unsigned_t<T>)1 << (W - 1)) - 1) : (T)((((std::make_unsigned_t<T>)1 << (W - 1)) - 1) * 2 + 1);
}

// The W-bit pattern of v read back as the target's integer (two's complement wrap).
template <int W, bool S, typename T> inline T wrap(T v) {
    using U = std::make_unsigned_t<T>;
    constexpr int B = 8 * sizeof(T);
    if constexpr (W >= B) {
        return v;
    } else if constexpr (S) {
        return (T)((U)v << (B - W)) >> (B - W);
    } else {
        return (T)((U)v & (((U)1 << W) - 1));
    }
}

// SAT_SYM gives signed types the symmetric range [-max, max]: ap_fixed maps the most negative
// pattern to -max too, also when it was reached without overflowing.
template <int W, bool S, int O, typename T> constexpr T lowest_kept() {
    return (O == SAT_SYM && S) ? (T)(-highest<W, S, T>()) : lowest<W, S, T>();
}

// Whether the exact value v changes when it is brought into the type (overflow or saturation).
template <int W, bool S, int O, typename T> inline bool overflows(T v) {
    return v < lowest_kept<W, S, O, T>() || v > highest<W, S, T>();
}

// Overflow handling of an exact integer v into W bits (signed or not) by mode O.
template <int W, bool S, int O, typename T> inline T overflow(T v) {
    constexpr T lo = lowest<W, S, T>(), hi = highest<W, S, T>();
    if constexpr (O == WRAP) {
        return wrap<W, S, T>(v);
    } else if constexpr (O == SAT) {
        return v < lo ? lo : (v > hi ? hi : v);
    } else if constexpr (O == SAT_ZERO) {
        return (v < lo || v > hi) ? (T)0 : v;
    } else {  // SAT_SYM
        constexpr T slo = lowest_kept<W, S, O, T>();
        return v < slo ? slo : (v > hi ? hi : v);
    }
}

// raw at FIN fractional bits -> raw of <W, F, S, Q, O>. T must hold v and, for a left shift, v << (F - FIN).
template <int FIN, int W, int F, bool S, int Q, int O, typename T> inline T requant(T v) {
    if constexpr (FIN > F) {
        return overflow<W, S, O, T>(round_shift<FIN - F, Q, T>(v));
    } else if constexpr (FIN < F) {
        using U = std::make_unsigned_t<T>;
        return overflow<W, S, O, T>((T)((U)v << (F - FIN)));
    } else {
        return overflow<W, S, O, T>(v);
    }
}

// requant, counting (in `count`) the values that left the target's range.
template <int FIN, int W, int F, bool S, int Q, int O, typename T> inline T requant_counted(T v, uint64_t &count) {
    T exact;
    if constexpr (FIN > F) exact = round_shift<FIN - F, Q, T>(v);
    else if constexpr (FIN < F) exact = (T)((std::make_unsigned_t<T>)v << (F - FIN));
    else exact = v;
    count += overflows<W, S, O, T>(exact);
    return overflow<W, S, O, T>(exact);
}

// 2^e as a double, exactly, at compile time (|e| <= 1000)
constexpr double pow2(int e) {
    double r = 1.0;
    for (int i = 0; i < (e < 0 ? -e : e); i++) r = e < 0 ? r / 2 : r * 2;
    return r;
}

// A double (finite or not) -> raw of <W, F, S, Q, O>, as ap_fixed_base(double) does.
template <int W, int F, bool S, int Q, int O> inline int64_t from_double(double d, uint64_t *count = nullptr) {
    constexpr int64_t lo = lowest_kept<W, S, O, int64_t>(), hi = highest<W, S, int64_t>();
    if (std::isnan(d)) return 0;
    const double t = d * pow2(F);  // exact: a power-of-two scale (doubles here are far from under/overflow)
    double f = std::floor(t);
    const double rem = t - f;  // exact
    double r = f;
    if constexpr (Q == TRN_ZERO) r = (t < 0 && rem != 0) ? f + 1 : f;
    if constexpr (Q == RND) r = rem >= 0.5 ? f + 1 : f;
    if constexpr (Q == RND_ZERO) r = (rem > 0.5 || (rem == 0.5 && t < 0)) ? f + 1 : f;
    if constexpr (Q == RND_MIN_INF) r = rem > 0.5 ? f + 1 : f;
    if constexpr (Q == RND_INF) r = (rem > 0.5 || (rem == 0.5 && t >= 0)) ? f + 1 : f;
    if constexpr (Q == RND_CONV) r = (rem > 0.5 || (rem == 0.5 && std::fmod(f, 2.0) != 0)) ? f + 1 : f;
    const bool out = r < (double)lo || r > (double)hi;
    if (count) *count += out;
    if (!out) return (int64_t)r;
    if constexpr (O == WRAP) {
        if (std::isinf(r)) return 0;  // every bit of the pattern is shifted out
        // the low 64 bits of the integer r decide a W <= 64 wrap; every step here is exact
        const double m = std::fmod(r, 18446744073709551616.0), two63 = 9223372036854775808.0;
        uint64_t bits;
        if (m >= two63) bits = (uint64_t)(m - two63) + (1ULL << 63);
        else if (m <= -two63) bits = (uint64_t)(int64_t)(m + two63) + (1ULL << 63);
        else bits = (uint64_t)(int64_t)m;
        return wrap<W, S, int64_t>((int64_t)bits);
    } else if constexpr (O == SAT_ZERO) {
        return 0;
    } else {  // SAT, SAT_SYM (lo is already -max for a signed SAT_SYM)
        return r < (double)lo ? lo : hi;
    }
}


// An exact raw value at FIN fractional bits aligned to F (rounding by Q when bits are dropped), not yet
// brought into any width.
template <int FIN, int F, int Q, typename T> inline T align(T v) {
    if constexpr (FIN > F) return round_shift<FIN - F, Q, T>(v);
    else if constexpr (FIN < F) return (T)((std::make_unsigned_t<T>)v << (F - FIN));
    else return v;
}

// Multiply-accumulate of one input value into N accumulators, as hls4ml's dense/conv kernels do it:
// each product is cast to accum_t (rounded at FA, overflowed at WA), each running sum is cast to
// accum_t. A wrapping accumulator is summed modulo 2^bits(T) and wrapped once in acc_finish (the
// same result: wrapping is a ring homomorphism); a saturating one is clamped step by step.
template <int N, int FP, int WA, int FA, bool SA, int QA, int OA, typename T, typename XT, typename WT>
inline void mac(T *__restrict acc, XT x, const WT *__restrict w) {
    using U = std::make_unsigned_t<T>;
    const T xv = (T)x;
    for (int j = 0; j < N; j++) {
        const T q = align<FP, FA, QA, T>((T)(xv * (T)w[j]));
        if constexpr (OA == WRAP) acc[j] = (T)((U)acc[j] + (U)q);
        else acc[j] = overflow<WA, SA, OA, T>((T)(acc[j] + overflow<WA, SA, OA, T>(q)));
    }
}

// One weight against N inputs side by side (a convolution's output positions, input stride XS):
// acc[o] += accum_t(x[o * XS] * w), with mac's casts. Vectorizes across positions, whatever the
// number of filters.
template <int N, int XS, int FP, int WA, int FA, bool SA, int QA, int OA, typename T>
inline void mac_positions(T *__restrict acc, const T *__restrict x, T w) {
    using U = std::make_unsigned_t<T>;
    for (int o = 0; o < N; o++) {
        const T q = align<FP, FA, QA, T>((T)(x[o * XS] * w));
        if constexpr (OA == WRAP) acc[o] = (T)((U)acc[o] + (U)q);
        else acc[o] = overflow<WA, SA, OA, T>((T)(acc[o] + overflow<WA, SA, OA, T>(q)));
    }
}

// A convolution's output positions in register-sized blocks: for output positions o0..o0+L-1 of one
// filter, every (kernel position, channel) term in hls4ml's order, accumulated in registers. x
// points at the block's first input of the first term; `offsets[t]` and `weights[t]` give each term
// (input offset in elements, weight raw); XS is the input stride between positions.
template <int L, int NT, int XS, int FP, int WA, int FA, bool SA, int QA, int OA, typename T>
inline void conv_block(T *__restrict out, const T *__restrict x, const int *__restrict offsets,
                       const T *__restrict weights, T init) {
    using U = std::make_unsigned_t<T>;
    if constexpr (XS == 1 && QA == TRN && OA == WRAP && FP >= FA && L * sizeof(T) == 64) {
        // hls4ml's default modes: multiply, arithmetic shift, add; the accumulator stays in a register
        typedef U vec __attribute__((vector_size(64)));
        typedef T svec __attribute__((vector_size(64)));
        vec a;
        for (int l = 0; l < L; l++) a[l] = (U)init;
        for (int t = 0; t < NT; t++) {
            svec xv;
            std::memcpy(&xv, x + offsets[t], sizeof(xv));
            a += (vec)((xv * weights[t]) >> (FP - FA));
        }
        std::memcpy(out, &a, sizeof(a));
        return;
    }
    T a[L];
    for (int l = 0; l < L; l++) a[l] = init;
    for (int t = 0; t < NT; t++) {
        const T *xs = x + offsets[t];
        const T w = weights[t];
#pragma GCC unroll 1
        for (int l = 0; l < L; l++) {  // one vector of L lanes (not unrolled into scalars first)
            const T q = align<FP, FA, QA, T>((T)(xs[l * XS] * w));
            if constexpr (OA == WRAP) a[l] = (T)((U)a[l] + (U)q);
            else a[l] = overflow<WA, SA, OA, T>((T)(a[l] + overflow<WA, SA, OA, T>(q)));
        }
    }
    for (int l = 0; l < L; l++) out[l] = a[l];
}

template <int N, int WA, bool SA, int OA, typename T> inline void acc_finish(T *acc) {
    if constexpr (OA == WRAP) for (int j = 0; j < N; j++) acc[j] = wrap<WA, SA, T>(acc[j]);
}

// The counting twin of mac: exact (wide) running sums, and per output whether the accumulator type
// changed any value on the way (a product or a sum out of its range).
template <int N, int FP, int WA, int FA, bool SA, int QA, int OA, typename T, typename E, typename XT, typename WT>
inline void mac_counted(T *acc, E *exact, bool *changed, XT x, const WT *w) {
    for (int j = 0; j < N; j++) {
        const E q = align<FP, FA, QA, E>((E)x * (E)w[j]);
        changed[j] |= overflows<WA, SA, OA, E>(q);
        const E qv = overflow<WA, SA, OA, E>(q);
        if constexpr (OA == WRAP) {
            exact[j] += qv;
        } else {
            const E sum = (E)acc[j] + qv;
            changed[j] |= overflows<WA, SA, OA, E>(sum);
            acc[j] = (T)overflow<WA, SA, OA, E>(sum);
        }
    }
}

template <int N, int WA, bool SA, int OA, typename T, typename E>
inline void acc_finish_counted(T *acc, E *exact, bool *changed, uint64_t &count) {
    for (int j = 0; j < N; j++) {
        if constexpr (OA == WRAP) {
            changed[j] |= overflows<WA, SA, OA, E>(exact[j]);
            acc[j] = (T)wrap<WA, SA, E>(exact[j]);
        }
        count += changed[j];
    }
}

// from_double over n floats (a sample's inputs) into raws of type R. A float scaled by 2^F is
// still exact in float, and so are floor and the rounding decisions, so blocks whose scaled
// magnitudes stay under 2^30 (every sane input) take a branch-free float path that vectorizes at
// the full width; a block holding anything else (huge, infinite, NaN) goes value by value.
template <int W, int F, bool S, int Q, int O, typename R>
inline void from_floats(const float *__restrict in, R *__restrict out, int n, uint64_t *count) {
    constexpr int B = 256;
    constexpr float scale = (float)pow2(F);
    for (int start = 0; start < n; start += B) {
        const int m = n - start < B ? n - start : B;
        float r[B];
        int big = 0;
        for (int k = 0; k < m; k++) {
            const float t = in[start + k] * scale;
            const float f = std::floor(t), rem = t - f;
            float up = 0.0f;
            if constexpr (Q == TRN_ZERO) up = (t < 0 && rem != 0) ? 1.0f : 0.0f;
            if constexpr (Q == RND) up = rem >= 0.5f ? 1.0f : 0.0f;
            if constexpr (Q == RND_ZERO) up = (rem > 0.5f || (rem == 0.5f && t < 0)) ? 1.0f : 0.0f;
            if constexpr (Q == RND_MIN_INF) up = rem > 0.5f ? 1.0f : 0.0f;
            if constexpr (Q == RND_INF) up = (rem > 0.5f || (rem == 0.5f && t >= 0)) ? 1.0f : 0.0f;
            if constexpr (Q == RND_CONV) up = (rem > 0.5f || (rem == 0.5f && f * 0.5f != std::floor(f * 0.5f))) ? 1.0f : 0.0f;
            r[k] = f + up;
            big |= !(std::fabs(r[k]) < 1073741824.0f);  // true for NaN and infinities too
        }
        if (big || count != nullptr) {
            for (int k = 0; k < m; k++) out[start + k] = (R)from_double<W, F, S, Q, O>((double)in[start + k], count);
        } else if constexpr (W <= 31 || (W == 32 && S)) {
            for (int k = 0; k < m; k++) out[start + k] = (R)overflow<W, S, O, int32_t>((int32_t)r[k]);
        } else {
            for (int k = 0; k < m; k++) out[start + k] = (R)(int32_t)r[k];  // |r| < 2^30 fits any wider type
        }
    }
}

template <int F, typename T> inline double to_double(T raw) { return (double)raw * pow2(-F); }

// hls4ml's softmax table address: the top N bits of the W-bit pattern.
template <int W, int N, typename T> inline unsigned top_bits(T raw) {
    static_assert(W >= N, "a softmax table address needs at least as many bits as the table has address bits");
    return (unsigned)(((std::make_unsigned_t<T>)raw >> (W - N)) & ((1u << N) - 1));
}

// hls4ml's tree reduction order (nnet_common.h `reduce`): left part is the largest power of two below N.
constexpr int pow2_below(int n) { int p = 1; while (p * 2 <= n - 1) p *= 2; return n > 1 ? p : 0; }

}  // namespace yfx
"""
