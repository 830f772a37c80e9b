import sys, time; sys.path.insert(0, __import__('os').path.dirname(__import__('os').path.abspath(__file__)) + '/..'); 
from unsup_prototype import *
import ot
mb=sys.argv[1]; n=int(sys.argv[2])
xa,ha=load(__import__('os').environ.get('UNSUP_DATA', '/tmp/u2'),'all-MiniLM-L6-v2'); xb,hb=load(__import__('os').environ.get('UNSUP_DATA', '/tmp/u2'),mb)
ua,ub,mua,mub,truth=setup(xa,xb,n,True)
c1,c2=ua@ua.T,ub@ub.T
p=np.full(n,1/n)
def report(name,t,t0):
    print(f'{name}: loss {gw_loss(c1,c2,t):.5f} argmax acc {(t.argmax(1)==truth).mean():.3f} ({time.time()-t0:.1f}s)',flush=True)
t0=time.time()
t,log=ot.gromov.gromov_wasserstein(c1,c2,p,p,'square_loss',log=True,max_iter=100)
report('exact GW from uniform',t,t0)
for seed in range(3):
    t0=time.time()
    g0=np.eye(n)[np.random.default_rng(seed).permutation(n)]/n
    t,log=ot.gromov.gromov_wasserstein(c1,c2,p,p,'square_loss',G0=g0,log=True,max_iter=100)
    report(f'exact GW from random perm {seed}',t,t0)
