import sys, time; sys.path.insert(0, __import__('os').path.dirname(__import__('os').path.abspath(__file__)) + '/..')
from unsup_prototype import *
import ot
mb=sys.argv[1]; n=int(sys.argv[2]); tau=float(sys.argv[3])
xa,ha=load(__import__('os').environ.get('UNSUP_DATA', '/tmp/u2'),'all-MiniLM-L6-v2'); xb,hb=load(__import__('os').environ.get('UNSUP_DATA', '/tmp/u2'),mb)
ua,ub,mua,mub,truth=setup(xa,xb,n,True)
def K(u):
    c=np.exp((u@u.T)/tau); np.fill_diagonal(c,0); return c/c.std()
c1,c2=K(ua),K(ub)
p=np.full(n,1/n)
print('loss truth', gw_loss(c1,c2,np.eye(n)/n))
def report(name,t,t0):
    print(f'{name}: loss {gw_loss(c1,c2,t):.5f} argmax acc {(t.argmax(1)==truth).mean():.3f} ({time.time()-t0:.1f}s)',flush=True)
t0=time.time()
t,log=ot.gromov.gromov_wasserstein(c1,c2,p,p,'square_loss',log=True,max_iter=100)
report('exact GW from uniform',t,t0)
for eps in (0.05,0.02):
    t0=time.time(); t=egw(c1,c2,eps,outer=50); report(f'entropic {eps}',t,t0)
    w,p2=refine(ua,ub,mutual(t)); print(' refined acc', acc_pairs(p2,truth), len(p2))
