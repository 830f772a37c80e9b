import sys, time; sys.path.insert(0, __import__('os').path.dirname(__import__('os').path.abspath(__file__)) + '/..')
from unsup_prototype import *
mb=sys.argv[1]; n=int(sys.argv[2]); ctl=sys.argv[3]=='c'
e0,e1,steps,outer=float(sys.argv[4]),float(sys.argv[5]),int(sys.argv[6]),int(sys.argv[7])
seed=int(sys.argv[8]) if len(sys.argv)>8 else -1
xa,ha=load(__import__('os').environ.get('UNSUP_DATA', '/tmp/u2'),'all-MiniLM-L6-v2'); xb,hb=load(__import__('os').environ.get('UNSUP_DATA', '/tmp/u2'),mb)
ua,ub,mua,mub,truth=setup(xa,xb,n,ctl)
c1,c2=ua@ua.T,ub@ub.T
t=None; t0=time.time()
if seed>=0:
    rng=np.random.default_rng(seed); t=np.exp(rng.standard_normal((n,n))*0.5); t=sinkhorn(-np.log(t),1e9) if False else t/t.sum()
for eps in np.geomspace(e0,e1,steps):
    t=egw(c1,c2,eps,t0=t,outer=outer,tol=1e-4)
    print(f'eps {eps:.3f}: loss {gw_loss(c1,c2,t):.5f} acc {(t.argmax(1)==truth).mean() if truth is not None else 0:.3f} ({time.time()-t0:.0f}s)',flush=True)
w0=procrustes_m(ua.T@t@ub)
ev("GW plan procrustes",w0,ha,hb,mua,mub)
w2,p2=refine(ua,ub,mutual(t)); ev("GW mutual + csls refine",w2,ha,hb,mua,mub); print(' pairs',len(p2),'acc',acc_pairs(p2,truth))
