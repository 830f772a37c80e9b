import sys; sys.path.insert(0, __import__('os').path.dirname(__import__('os').path.abspath(__file__)) + '/..')
from unsup_prototype import *
xa,ha=load(__import__('os').environ.get('UNSUP_DATA', '/tmp/u2'),'all-MiniLM-L6-v2'); xb,hb=load(__import__('os').environ.get('UNSUP_DATA', '/tmp/u2'),sys.argv[1])
n=int(sys.argv[2]); off=int(sys.argv[3])
def pca(x,k):
    u=unit(x-x.mean(0)); _,s,vt=np.linalg.svd(u,full_matrices=False); return u@vt[:k].T, s
za,sa=pca(xa[:n],10); zb,sb=pca(xb[off:off+n],10)
# true correspondence only meaningful if off==0
if off==0:
  c=np.corrcoef(za.T,zb.T)[:10,10:]
  np.set_printoptions(precision=2,suppress=True); print(c)
else:
  # compare PCs of two disjoint samples of same model
  zb2,_=pca(xa[n:2*n],10)
  va=np.linalg.svd(unit(xa[:n]-xa[:n].mean(0)),full_matrices=False)[2][:10]
  vb=np.linalg.svd(unit(xa[n:2*n]-xa[n:2*n].mean(0)),full_matrices=False)[2][:10]
  np.set_printoptions(precision=2,suppress=True); print(va@vb.T)
