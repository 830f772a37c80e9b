import sys; sys.path.insert(0, __import__('os').path.dirname(__import__('os').path.abspath(__file__)) + '/..')
from unsup_prototype import *
mb,n,kind=sys.argv[1],int(sys.argv[2]),sys.argv[3]
xa,ha=load(__import__('os').environ.get('UNSUP_DATA', '/tmp/u2'),'all-MiniLM-L6-v2'); xb,hb=load(__import__('os').environ.get('UNSUP_DATA', '/tmp/u2'),mb)
ua,ub,mua,mub,truth=setup(xa,xb,n,kind=='c')
p=np.loadtxt(f'{__import__("os").environ.get("UNSUP_DATA", "/tmp/u2")}/pairs_{mb}_{n}_{kind}.txt',dtype=int)
ra,rb=unit(xa[:n]-xa[:n].mean(0)), unit(xb[:n]-xb[:n].mean(0))
ev('paired',procrustes(ra,rb),ha,hb,xa[:n].mean(0),xb[:n].mean(0))
ev('rust pairs',procrustes(ua[p[:,0]],ub[p[:,1]]),ha,hb,mua,mub)
