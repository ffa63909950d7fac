"""Initial moments of EIConv2D / INormConv2D on 256 Fashion-MNIST test images (README,
"Convolutional presets"): PYTHONPATH=.:tests python docs/results/conv/measure_init.py"""
import gzip, numpy as np, keras
from ei_keras.layers import EIConv2D, INormConv2D
import conv_reference as cref
with gzip.open("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz") as f:
    f.read(16); x = (np.frombuffer(f.read(256*784), np.uint8).reshape(256,28,28,1)/255.).astype("float32")
l = EIConv2D(16, 5, strides=2, padding="same", seed=0)
z = np.asarray(l(x), np.float64); e = np.asarray(l.excitatory_drive(keras.ops.convert_to_tensor(x)), np.float64)
me, mee = np.abs(z.mean(-1)), np.abs(e.mean(-1))
lit = mee > 0
print("EI max|mean_c z|", me.max(), "E drive: max", mee.max(), "lit frac", lit.mean(), "median lit", np.median(mee[lit]), "std lit", z.std(-1)[lit].mean(), "max |e|", np.abs(e).max())
for st in ["map", "location"]:
    l = INormConv2D(16, 5, strides=2, padding="same", statistics=st, seed=0); l.build(x.shape)
    zz, loss = l.preactivation(x); zz = np.asarray(zz, np.float64)
    ax = (1,2,3) if st=="map" else (-1,)
    m2 = (zz**2).mean(ax)
    P = cref.im2col(x, (5,5), (2,2), "same")
    empty = np.all(P==0, -1)
    print(st, "max|mean|", np.abs(zz.mean(ax)).max(), "max|m2-1|", np.abs(m2-1).max(), "loss", float(loss), "empty frac", empty.mean(),
          "median|m2-1| nonempty" if st=="location" else "", np.median(np.abs(m2[~empty]-1)) if st=="location" else "")
