"""The conv presets' measurements (README, "Convolutional presets"), JAX backend:
PYTHONPATH=. KERAS_BACKEND=jax python docs/results/conv/measure_conv.py 'PRESET SEED k=v ...' 'PRESET SEED ...' : one JSON line per run."""
import json, sys, time
import keras
from ei_keras import zoo, data
from ei_keras.divergence import DivergenceMonitor

for spec in sys.argv[1:]:
    name, seed, *rest = spec.split()
    seed = int(seed)
    kv = dict(a.split("=") for a in rest)
    stats = kv.pop("statistics", None)
    n_train = int(kv.pop("train", 4096)); epochs = int(kv.pop("epochs", 2))
    hp = {k: float(v) for k, v in kv.items()}
    keras.utils.set_random_seed(seed)
    train, (xt, yt), _ = data.make_datasets(0.75, batch_size=32, seed=seed, train_subset=n_train,
                                            test_subset=2000, validation_size=0)
    model = zoo.build(name, seed=seed, model_overrides={"statistics": stats} if stats else None, **hp)
    mon = DivergenceMonitor(rates=zoo.hyperparameters(name, **hp))
    t = time.time()
    h = model.fit(train, epochs=epochs, shuffle=False, verbose=0, callbacks=[train.sync_callback(), mon])
    ev = model.evaluate(xt, yt, batch_size=1000, verbose=0, return_dict=True)
    print(json.dumps({"preset": name, "seed": seed, "stats": stats, **hp, "diverged": bool(mon.diverged),
                      "task_loss": [round(v, 4) for v in h.history["task_loss"]],
                      "norm_loss": [round(v, 5) for v in h.history["norm_loss"]],
                      "test_acc": round(float(ev["accuracy"]), 4), "s": round(time.time() - t, 1)}), flush=True)
