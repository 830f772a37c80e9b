def kmeans(u,k,seed,iters=50):
    rng=np.random.default_rng(seed)
    # k-means++
    c=[u[rng.integers(len(u))]]
    d=np.full(len(u),np.inf)
    for _ in range(k-1):
        d=np.minimum(d,((u-c[-1])**2).sum(1)); c.append(u[rng.choice(len(u),p=d/d.sum())])
    c=np.array(c)
    for _ in range(iters):
        lab=((u[:,None,:]-c[None])**2).sum(-1).argmin(1) if False else (-(u@c.T)+0.5*(c**2).sum(1)).argmin(1)
        c=np.array([u[lab==j].mean(0) if (lab==j).any() else c[j] for j in range(k)])
    return c,lab

