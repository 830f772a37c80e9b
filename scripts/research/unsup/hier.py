import sys, time; sys.path.insert(0, __import__('os').path.dirname(__import__('os').path.abspath(__file__)) + '/..')
from unsup_prototype import *
import ot
exec(open(__import__('os').path.dirname(__import__('os').path.abspath(__file__)) + '/kmeans_def.py').read())
mb=sys.argv[1]; n=int(sys.argv[2]); k=int(sys.argv[3]); control=sys.argv[4]=='c'
xa,ha=load(__import__('os').environ.get('UNSUP_DATA', '/tmp/u2'),'all-MiniLM-L6-v2'); xb,hb=load(__import__('os').environ.get('UNSUP_DATA', '/tmp/u2'),mb)
ua,ub,mua,mub,truth=setup(xa,xb,n,control)
c1,c2=ua@ua.T,ub@ub.T
p=np.full(n,1/n)
t0=time.time()
for seed in range(int(sys.argv[5])):
    ca,la=kmeans(ua,k,2*seed); cb,lb=kmeans(ub,k,2*seed+1)
    pa=np.bincount(la,minlength=k)/n; pb=np.bincount(lb,minlength=k)/n
    ga=ca@ca.T; gb=cb@cb.T
    rng=np.random.default_rng(seed); best=None
    for r in range(100):
        perm=rng.permutation(k); g0=np.zeros((k,k)); g0[np.arange(k),perm]=1
        g0=ot.emd(pa,pb,-g0)
        t,log=ot.gromov.gromov_wasserstein(ga,gb,pa,pb,'square_loss',G0=g0,log=True)
        if best is None or log['gw_dist']<best[0]: best=(log['gw_dist'],t)
    tc=best[1]
    T0=tc[la][:,lb]/(pa[la][:,None]*pb[lb][None,:])/n/n
    T0=ot.sinkhorn(p,p,-np.log(T0+1e-30),1.0) if False else T0
    cacc=(tc.argmax(1)[la]==lb[truth]).mean() if truth is not None else float('nan')
    t,log=ot.gromov.gromov_wasserstein(c1,c2,p,p,'square_loss',G0=T0,log=True,max_iter=200)
    acc=(t.argmax(1)==truth).mean() if truth is not None else float('nan')
    w1,t1=wass_procrustes(ua,ub,procrustes_m(ua.T@t@ub),eps=0.05)
    s=unit(ua@w1)@ub.T; crit=np.sum(t1*s)
    print(f'seed {seed}: cluster gw {best[0]:.5f} acc {cacc:.3f} | point gw {gw_loss(c1,c2,t):.5f} acc {acc:.3f} | WP crit {crit:.4f} ({time.time()-t0:.0f}s)',flush=True)
    ev('  WP',w1,ha,hb,mua,mub)
