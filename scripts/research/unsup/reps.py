import sys; sys.path.insert(0, __import__('os').path.dirname(__import__('os').path.abspath(__file__)) + '/..')
from unsup_prototype import *
from scipy.stats import rankdata
mb=sys.argv[1]; n=1024
xa,ha=load(__import__('os').environ.get('UNSUP_DATA', '/tmp/u2'),'all-MiniLM-L6-v2'); xb,hb=load(__import__('os').environ.get('UNSUP_DATA', '/tmp/u2'),mb)
ua=unit(xa[:n]-xa[:n].mean(0)); ub=unit(xb[:n]-xb[:n].mean(0))
iu=np.triu_indices(n,1)
def corr(c1,c2): return np.corrcoef(c1[iu],c2[iu])[0,1]
print('raw', corr(ua@ua.T, ub@ub.T))
for k in (5,10,20,50,100):
    def lowr(u):
        _,s,vt=np.linalg.svd(u,full_matrices=False); z=u@vt[:k].T; return z@z.T
    print('pca',k, corr(lowr(ua),lowr(ub)))
def white(u,k):
    _,s,vt=np.linalg.svd(u,full_matrices=False); z=u@vt[:k].T/s[:k]; z=unit(z); return z@z.T
for k in (20,50,100): print('whitened',k, corr(white(ua,k),white(ub,k)))
for tau in (0.05,0.1):
    f=lambda c: np.exp(c/tau)
    print('exp kernel',tau, corr(f(ua@ua.T),f(ub@ub.T)))
