import sys; sys.path.insert(0, __import__('os').path.dirname(__import__('os').path.abspath(__file__)) + '/..')
from unsup_prototype import *
xa,ha=load(__import__('os').environ.get('UNSUP_DATA', '/tmp/u2'),'all-MiniLM-L6-v2'); xb,hb=load(__import__('os').environ.get('UNSUP_DATA', '/tmp/u2'),sys.argv[1])
n=1024
ua=unit(xa[:n]-xa[:n].mean(0)); ub=unit(xb[:n]-xb[:n].mean(0))
c1=ua@ua.T; c2=ub@ub.T
iu=np.triu_indices(n,1)
print('corr of sims (true pairs)', np.corrcoef(c1[iu],c2[iu])[0,1])
print('std sims', c1[iu].std(), c2[iu].std(), 'mean',c1[iu].mean(), c2[iu].mean())
T=np.eye(n)/n
print('gw loss truth', gw_loss(c1,c2,T))
rng=np.random.default_rng(0); P=np.eye(n)[rng.permutation(n)]/n
print('gw loss random perm', gw_loss(c1,c2,P))
print('gw loss uniform', gw_loss(c1,c2,np.full((n,n),1/n/n)))
# spectra
ea=np.linalg.eigvalsh(c1)[::-1][:10]; eb=np.linalg.eigvalsh(c2)[::-1][:10]
print('eig a', np.round(ea/ea.sum(),3)); print('eig b', np.round(eb/eb.sum(),3))
# rank-based: kNN overlap
k=10
na=np.argsort(-c1,1)[:,1:k+1]; nb=np.argsort(-c2,1)[:,1:k+1]
print('knn@10 overlap', np.mean([len(set(na[i])&set(nb[i]))/k for i in range(n)]))
