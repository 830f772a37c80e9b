import sys, time; sys.path.insert(0, __import__('os').path.dirname(__import__('os').path.abspath(__file__)) + '/..')
from unsup_prototype import *
mb=sys.argv[1]; n=int(sys.argv[2]); rep=sys.argv[3]
xa,ha=load(__import__('os').environ.get('UNSUP_DATA', '/tmp/u2'),'all-MiniLM-L6-v2'); xb,hb=load(__import__('os').environ.get('UNSUP_DATA', '/tmp/u2'),mb)
ua,ub,mua,mub,truth=setup(xa,xb,n,sys.argv[4]=="c")
def gram(u):
    if rep=='raw': return u@u.T
    k=int(rep); _,s,vt=np.linalg.svd(u,full_matrices=False); z=u@vt[:k].T; return z@z.T
c1,c2=gram(ua),gram(ub)

t=None; t0=time.time()
for eps in np.geomspace(1.0,0.01,12):
    t=egw(c1,c2,eps,t0=t,outer=15)
    print(f'eps {eps:.3f}: loss {gw_loss(c1,c2,t):.5f} acc {(t.argmax(1)==truth).mean() if truth is not None else 0:.3f} ({time.time()-t0:.0f}s)',flush=True)
w1,t1=wass_procrustes(ua,ub,procrustes_m(ua.T@t@ub),eps=0.05)
ev("WP",w1,ha,hb,mua,mub); ev("GW plan procrustes",procrustes_m(ua.T@t@ub),ha,hb,mua,mub); w2,p2=refine(ua,ub,mutual(t1)); ev("WP+csls refine",w2,ha,hb,mua,mub); s=unit(ua@w1)@ub.T; print("crit",np.sum(t1*s))
