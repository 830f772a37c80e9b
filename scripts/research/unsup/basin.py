import sys; sys.path.insert(0, __import__('os').path.dirname(__import__('os').path.abspath(__file__)) + '/..')
from unsup_prototype import *
mb=sys.argv[1]; n=1024
xa,ha=load(__import__('os').environ.get('UNSUP_DATA', '/tmp/u2'),'all-MiniLM-L6-v2'); xb,hb=load(__import__('os').environ.get('UNSUP_DATA', '/tmp/u2'),mb)
ua,ub,mua,mub,truth=setup(xa,xb,n,False)
ra,rb=unit(xa[:n]-xa[:n].mean(0)), unit(xb[:n]-xb[:n].mean(0))
wt=procrustes(ra,rb)
rng=np.random.default_rng(0)
r=procrustes_m(rng.standard_normal(wt.shape))
for a in (0.5,0.3,0.2,0.1):
    w=procrustes_m(a*wt+(1-a)*r*np.linalg.norm(wt)/np.linalg.norm(r))
    print('alpha',a); ev('init',w,ha,hb,mua,mub)
    w1,t1=wass_procrustes(ua,ub,w,eps=0.05,rounds=20); s=unit(ua@w1)@ub.T
    ev('WP',w1,ha,hb,mua,mub); print('   crit',np.sum(t1*s))
