import sys, time; sys.path.insert(0, __import__('os').path.dirname(__import__('os').path.abspath(__file__)) + '/..')
from unsup_prototype import *
import ot
mb=sys.argv[1]; n=int(sys.argv[2]); k=int(sys.argv[3]); restarts=int(sys.argv[4])
xa,ha=load(__import__('os').environ.get('UNSUP_DATA', '/tmp/u2'),'all-MiniLM-L6-v2'); xb,hb=load(__import__('os').environ.get('UNSUP_DATA', '/tmp/u2'),mb)

exec(open(__import__('os').path.dirname(__import__('os').path.abspath(__file__)) + '/kmeans_def.py').read())

for control in (True,False):
    ua,ub,mua,mub,truth=setup(xa,xb,n,control)
    print('== control' if control else '== disjoint')
    t0=time.time()
    ca,la=kmeans(ua,k,0); cb,lb=kmeans(ub,k,1)
    pa=np.bincount(la,minlength=k)/n; pb=np.bincount(lb,minlength=k)/n
    ga=ca@ca.T; gb=cb@cb.T
    rng=np.random.default_rng(0)
    best=None
    for r in range(restarts):
        g0=pa[:,None]*pb[None,:] if r==0 else None
        if g0 is None:
            perm=rng.permutation(k); g0=np.zeros((k,k)); g0[np.arange(k),perm]=1; g0=g0/k
            g0=ot.emd(pa,pb,-g0)  # feasible plan near a random permutation
        t,log=ot.gromov.gromov_wasserstein(ga,gb,pa,pb,'square_loss',G0=g0,log=True,max_iter=200)
        if best is None or log['gw_dist']<best[0]: best=(log['gw_dist'],t)
    loss,t=best
    # cluster matching accuracy on control: fraction of texts whose A-cluster maps (argmax) to the B-cluster of the same text
    m=t.argmax(1)
    if truth is not None:
        lb_of_a=lb[truth]  # B cluster of the same text
        print(f' k={k} gw {loss:.5f} cluster-match acc {(m[la]==lb_of_a).mean():.3f}  (chance ~{np.sum(pa*pb):.3f})')
    w0=procrustes_m(ca.T@t@cb)
    ev('cluster GW procrustes',w0,ha,hb,mua,mub)
    w1,t1=wass_procrustes(ua,ub,w0,eps=0.05)
    if truth is not None: print(f'  WP argmax acc {(t1.argmax(1)==truth).mean():.3f}')
    ev('cluster GW + WP',w1,ha,hb,mua,mub)
    s=unit(ua@w1)@ub.T
    print(f'  criterion mean max csls {csls_scores(s).max(1).mean():.4f}  mean matched sim {np.sum(t1*s):.4f} ({time.time()-t0:.1f}s)',flush=True)
    if truth is not None:
        J=np.zeros((k,k)); np.add.at(J,(la,lb[truth]),1/n)
        def gwl(t): return ot.gromov.gromov_wasserstein2(ga,gb,pa,pb,'square_loss',G0=t,max_iter=1)
        print('  gw loss of true joint', gw_loss(ga,gb,J), 'vs found', gw_loss(ga,gb,t))
        tj,lj=ot.gromov.gromov_wasserstein(ga,gb,pa,pb,'square_loss',G0=J,log=True)
        print('  gw from true joint', lj['gw_dist'], 'acc', (tj.argmax(1)[la]==lb[truth]).mean())
    wt=procrustes(ua[np.arange(n)],ub[truth]) if truth is not None else None
    if wt is not None:
        s=unit(ua@wt)@ub.T; w1,t1=wass_procrustes(ua,ub,wt,eps=0.05); s=unit(ua@w1)@ub.T
        print(f'  oracle criterion mean max csls {csls_scores(s).max(1).mean():.4f} mean matched sim {np.sum(t1*s):.4f}')
    break
