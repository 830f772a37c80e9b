"""Prototype of unpaired (no paired texts) alignment between two sentence-embedding spaces.

Usage: python unsup_prototype.py DATA_DIR MODEL_A MODEL_B EXPERIMENT [N]
DATA_DIR holds anchors_<model>.safetensors (the 4,096 `migrate data` anchors) and
heldout_<model>.safetensors (1,000 other verses of the same corpus), embedded by
`relstitch embed`. Nothing here sees a true pair except the evaluation.
"""
import sys, time
import numpy as np
from safetensors.numpy import load_file


def load(d, m):
    a = load_file(f"{d}/anchors_{m}.safetensors")["embeddings"].astype(np.float64)
    h = load_file(f"{d}/heldout_{m}.safetensors")["embeddings"].astype(np.float64)
    return a, h


def unit(x):
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def procrustes(a, b):
    u, _, vt = np.linalg.svd(a.T @ b, full_matrices=False)
    return u @ vt


def csls_scores(s, k=10):
    ra = np.sort(s, axis=1)[:, -k:].mean(1)
    rb = np.sort(s, axis=0)[-k:, :].mean(0)
    return 2 * s - ra[:, None] - rb[None, :]


def mutual(s):
    bb = s.argmax(1)
    ba = s.argmax(0)
    i = np.arange(s.shape[0])
    keep = ba[bb] == i
    return np.stack([i[keep], bb[keep]], 1)


def refine(ua, ub, pairs, rounds=10):
    for _ in range(rounds):
        w = procrustes(ua[pairs[:, 0]], ub[pairs[:, 1]])
        s = unit(ua @ w) @ ub.T
        pairs = mutual(csls_scores(s))
    w = procrustes(ua[pairs[:, 0]], ub[pairs[:, 1]])
    return w, pairs


def procrustes_m(m):
    u, _, vt = np.linalg.svd(m, full_matrices=False)
    return u @ vt


def wass_procrustes(ua, ub, w, rounds=10, eps=0.02):
    """Grave et al. 2019: alternate an entropic OT plan between ua w and ub, and Procrustes on it."""
    for _ in range(rounds):
        t = sinkhorn(-(ua @ w) @ ub.T, eps)
        w = procrustes_m(ua.T @ t @ ub)
    return w, t


def sinkhorn(g, eps, iters=200, tol=1e-6):
    """Uniform-marginal entropic OT plan for cost g (exp domain, float64, eps relative to std)."""
    n, m = g.shape
    g = (g - g.min()) / (eps * g.std() + 1e-300)
    g = g - g.min(1, keepdims=True)
    k = np.exp(-g)
    a, b = np.full(n, 1.0 / n), np.full(m, 1.0 / m)
    v = np.ones(m)
    for _ in range(iters):
        u = a / np.maximum(k @ v, 1e-300)
        v_new = b / np.maximum(k.T @ u, 1e-300)
        if np.abs(v_new - v).max() / v.max() < tol:
            v = v_new
            break
        v = v_new
    u = a / np.maximum(k @ v, 1e-300)
    return u[:, None] * k * v[None, :]


def gw_loss(c1, c2, t):
    # sum_ijkl (c1_ik - c2_jl)^2 t_ij t_kl with uniform-ish marginals
    p, q = t.sum(1), t.sum(0)
    return p @ (c1**2) @ p + q @ (c2**2) @ q - 2 * np.sum((c1 @ t @ c2) * t)


def egw(c1, c2, eps, t0=None, outer=30, tol=1e-7):
    n, m = c1.shape[0], c2.shape[0]
    t = np.full((n, m), 1.0 / (n * m)) if t0 is None else t0
    for it in range(outer):
        g = -(c1 @ t @ c2)  # gradient of the square loss (up to constants and 4x)
        t_new = sinkhorn(g, eps)
        if np.abs(t_new - t).sum() < tol:
            t = t_new
            break
        t = t_new
    return t


def ev(name, w, ha, hb, mua, mub):
    x = unit(unit(ha - mua) @ w)
    y = unit(hb - mub)
    s = x @ y.T
    top1 = (s.argmax(1) == np.arange(len(s))).mean()
    r10 = np.mean([i in np.argsort(-s[i])[:10] for i in range(len(s))])
    cos = np.diag(s).mean()
    print(f"  {name}: held-out cos {cos:.3f} top1 {top1:.3f} top10 {r10:.3f}", flush=True)
    return top1


def setup(xa, xb, n, control):
    a = xa[:n]
    if control:
        b = xb[:n][::-1]
        truth = n - 1 - np.arange(n)  # a_i pairs with b_truth[i]
    else:
        b = xb[n:2 * n]
        truth = None
    mua, mub = a.mean(0), b.mean(0)
    return unit(a - mua), unit(b - mub), mua, mub, truth


def acc_pairs(pairs, truth):
    if truth is None or len(pairs) == 0:
        return float("nan")
    return (truth[pairs[:, 0]] == pairs[:, 1]).mean()


def main():
    d, ma, mb, exp = sys.argv[1:5]
    n = int(sys.argv[5]) if len(sys.argv) > 5 else 1024
    xa, ha = load(d, ma)
    xb, hb = load(d, mb)
    for control in (True, False):
        ua, ub, mua, mub, truth = setup(xa, xb, n, control)
        print(f"== {ma} -> {mb}, n={n}, {'control (same texts reversed)' if control else 'disjoint samples'}")
        # reference: paired Procrustes on n pairs (disjoint: A's own n texts paired)
        ra, rb = unit(xa[:n] - xa[:n].mean(0)), unit(xb[:n] - xb[:n].mean(0))
        ev("paired procrustes", procrustes(ra, rb), ha, hb, xa[:n].mean(0), xb[:n].mean(0))
        t0 = time.time()
        if exp == "gw":
            c1, c2 = ua @ ua.T, ub @ ub.T
            for eps in [float(e) for e in (sys.argv[6] if len(sys.argv) > 6 else "0.05,0.02,0.01").split(",")]:
                t = egw(c1, c2, eps)
                loss = gw_loss(c1, c2, t * 0 + t / t.sum())
                am = t.argmax(1)
                pairs = mutual(t)
                print(f" eps {eps}: gw loss {loss:.5f} argmax acc {acc_pairs(np.stack([np.arange(n), am], 1), truth):.3f} "
                      f"mutual {len(pairs)} acc {acc_pairs(pairs, truth):.3f} ({time.time()-t0:.1f}s)", flush=True)
                w, p2 = refine(ua, ub, pairs)
                print(f"  refined: {len(p2)} pairs acc {acc_pairs(p2, truth):.3f}")
                ev("gw+refine", w, ha, hb, mua, mub)
                w0 = procrustes_m(ua.T @ t @ ub)
                ev("gw plan procrustes", w0, ha, hb, mua, mub)
                w1, t1 = wass_procrustes(ua, ub, w0)
                print(f"  wass-procrustes: argmax acc {acc_pairs(np.stack([np.arange(n), t1.argmax(1)], 1), truth):.3f}")
                ev("gw+wass-procrustes", w1, ha, hb, mua, mub)
                w2, p3 = refine(ua, ub, mutual(t1))
                print(f"  wp+refined: {len(p3)} pairs acc {acc_pairs(p3, truth):.3f}")
                ev("gw+wp+refine", w2, ha, hb, mua, mub)
        elif exp == "faq":
            from scipy.optimize import quadratic_assignment
            c1, c2 = ua @ ua.T, ub @ ub.T
            r = quadratic_assignment(c1, c2, method="faq", options={"maximize": True, "maxiter": 60, "tol": 1e-4})
            perm = r.col_ind
            pairs = np.stack([np.arange(n), perm], 1)
            print(f" faq: obj {r.fun:.2f} acc {acc_pairs(pairs, truth):.3f} ({time.time()-t0:.1f}s)")
            w, p2 = refine(ua, ub, pairs)
            print(f"  refined: {len(p2)} pairs acc {acc_pairs(p2, truth):.3f}")
            ev("faq+refine", w, ha, hb, mua, mub)


if __name__ == "__main__":
    main()
