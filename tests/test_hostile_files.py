"""Model files checked before anything is built (hostile input, issue 10.4).

Each file is crafted by hand (zip members and .npy headers written directly)
and loaded in its own process under a memory cap: every one must be refused
with a ValueError naming the file, quickly, without allocating what it
declares (peak resident memory is checked) and without decompressing what
the model does not need.
"""
import textwrap

import pytest

from isolated import run_isolated

CRAFT = """
import io, json, resource, time, zipfile
import numpy.lib.format as npf

def npy_bytes(arr=None, shape=None, dtype="<f4", body=None):
    '''An .npy member: arr, or a header for (shape, dtype) with ``body`` as its data.'''
    out = io.BytesIO()
    if arr is not None:
        npf.write_array(out, np.asarray(arr), allow_pickle=False)
        return out.getvalue()
    npf.write_array_header_1_0(out, {"descr": dtype, "fortran_order": False, "shape": shape})
    return out.getvalue() + (body or b"")

def header(module):
    return npy_bytes(np.array(json.dumps({"format": "fastrnn-module", "version": 1,
                                          "module": module})))

def write(path, members, compress=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compress) as z:
        for name, data in members.items():
            z.writestr(name, data)

def refused(path, *words):
    '''fastrnn.load(path) raises a ValueError naming the file (and words), fast, small.'''
    start = time.perf_counter()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        fastrnn.load(path)
    except ValueError as exc:
        message = str(exc)
    else:
        raise AssertionError(f"{path} was loaded")
    seconds = time.perf_counter() - start
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss        # KiB
    assert message.startswith(str(path) + ":"), message
    for w in words:
        assert w in message, (w, message)
    assert seconds < 5, (seconds, message)
    assert grown < 64 * 1024, (grown, message)
    print("refused", path, "-", message)

gru = {"type": "GRU", "input_size": 3, "hidden_size": 4, "num_layers": 1, "bias": True,
       "batch_first": False, "dropout": 0.0, "bidirectional": False, "dtype": "float32"}
good = {k + ".npy": npy_bytes(v) for k, v in fastrnn.GRU(3, 4, seed=0).state_dict().items()}
"""

CASES = {
    # a tiny file declaring a large layer: refused from the headers, nothing allocated
    "large-declared-layer": """
        lstm = dict(gru, type="LSTM", input_size=3000, hidden_size=3000)
        write("big.npz", {"__fastrnn__.npy": header(lstm),
                          "weight_ih_l0.npy": npy_bytes(np.zeros((2, 2), np.float32))})
        refused("big.npz", "missing keys", "weight_hh_l0")
        # members whose headers match the architecture, with no data behind them
        shapes = {"weight_ih_l0": (12000, 3000), "weight_hh_l0": (12000, 3000),
                  "bias_ih_l0": (12000,), "bias_hh_l0": (12000,)}
        write("hollow.npz", {"__fastrnn__.npy": header(lstm),
                             **{k + ".npy": npy_bytes(shape=s) for k, s in shapes.items()}})
        refused("hollow.npz", "declares", "bytes")
        import os
        assert os.path.getsize("hollow.npz") < 4096, os.path.getsize("hollow.npz")
    """,
    "huge-sizes": """
        for key, value in (("hidden_size", 10**12), ("input_size", 2**31), ("num_layers", 10**7)):
            write("huge.npz", {"__fastrnn__.npy": header(dict(gru, **{key: value})), **good})
            refused("huge.npz", key)
        stacked = {"type": "Stacked", "layers": [gru] * 100000}
        write("many.npz", {"__fastrnn__.npy": header(stacked), **good})
        refused("many.npz", "layers")
    """,
    "nested-description": """
        deep = gru
        for _ in range(50):
            deep = {"type": "Bidirectional", "layer": deep}
        write("nested.npz", {"__fastrnn__.npy": header(deep), **good})
        refused("nested.npz", "nested")
        # JSON nested far past Python's recursion limit
        text = json.dumps({"format": "fastrnn-module", "version": 1, "module": gru})
        text = text[:-1] + ', "x": ' + "[" * 200000 + "]" * 200000 + "}"
        write("deep-json.npz", {"__fastrnn__.npy": npy_bytes(np.array(text)), **good})
        refused("deep-json.npz", "nested")
    """,
    "compressed-bomb": """
        # 64 MiB of zeros in ~64 KiB: an unexpected member is never decompressed
        zeros = npy_bytes(np.zeros(16 << 20, np.float32))
        write("bomb.npz", {"__fastrnn__.npy": header(gru), **good, "junk.npy": zeros},
              zipfile.ZIP_DEFLATED)
        refused("bomb.npz", "unexpected keys", "junk")
        # an expected name whose header says 48 floats but whose data inflates to 64 MiB
        members = dict(good, **{"weight_ih_l0.npy": npy_bytes(shape=(12, 3), body=zeros)})
        write("long.npz", {"__fastrnn__.npy": header(gru), **members}, zipfile.ZIP_DEFLATED)
        refused("long.npz", "weight_ih_l0", "declares")
    """,
    "corrupt-members": """
        write("good.npz", {"__fastrnn__.npy": header(gru), **good}, zipfile.ZIP_DEFLATED)
        raw = bytearray(open("good.npz", "rb").read())
        with zipfile.ZipFile("good.npz") as z:
            info = z.getinfo("weight_ih_l0.npy")
        # corrupt one byte of the member's compressed data: its CRC no longer matches
        start = info.header_offset + 30 + len(info.filename) + len(info.extra)
        raw[start + 5] ^= 0xFF
        open("crc.npz", "wb").write(bytes(raw))
        refused("crc.npz")
        # members marked encrypted (general-purpose flag bit 0 in the central directory)
        raw = bytearray(open("good.npz", "rb").read())
        at = raw.find(b"PK\x01\x02")
        while at >= 0:
            raw[at + 8] |= 1
            at = raw.find(b"PK\x01\x02", at + 4)
        open("encrypted.npz", "wb").write(bytes(raw))
        refused("encrypted.npz", "encrypted")
        # a member cut short
        write("short.npz", {"__fastrnn__.npy": header(gru),
                            **dict(good, **{"bias_ih_l0.npy": good["bias_ih_l0.npy"][:-8]})})
        refused("short.npz", "bias_ih_l0")
    """,
    "odd-members": """
        cases = {
            "dup.npz": None,
            "text.npz": {"__fastrnn__.npy": header(gru), **good, "notes.txt": b"hi"},
            "object.npz": {"__fastrnn__.npy": header(gru),
                           **dict(good, **{"bias_ih_l0.npy": npy_bytes(shape=(12,), dtype="|O")})},
            "fortran.npz": None,
            "wrong-dtype.npz": {"__fastrnn__.npy": header(gru),
                                **dict(good, **{"bias_ih_l0.npy": npy_bytes(np.zeros(12, int))})},
            "no-header.npz": dict(good),
            "bad-json.npz": {"__fastrnn__.npy": npy_bytes(np.array("{not json")), **good},
            "unknown-type.npz": {"__fastrnn__.npy": header({"type": "Transformer"}), **good},
            "bad-value.npz": {"__fastrnn__.npy": header(dict(gru, hidden_size="4")), **good},
            "negative.npz": {"__fastrnn__.npy": header(dict(gru, hidden_size=-4)), **good},
        }
        for path, members in cases.items():
            if path == "dup.npz":
                with zipfile.ZipFile(path, "w") as z:
                    z.writestr("__fastrnn__.npy", header(gru))
                    for k, v in good.items():
                        z.writestr(k, v)
                    import warnings
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        z.writestr("bias_ih_l0.npy", good["bias_ih_l0.npy"])
            elif path == "fortran.npz":
                out = io.BytesIO()
                npf.write_array(out, np.asfortranarray(np.zeros((12, 3), np.float32)))
                write(path, {"__fastrnn__.npy": header(gru),
                             **dict(good, **{"weight_ih_l0.npy": out.getvalue()})})
            else:
                write(path, members)
            refused(path)
        # bzip2 is not read
        write("bz2.npz", {"__fastrnn__.npy": header(gru), **good}, zipfile.ZIP_BZIP2)
        refused("bz2.npz", "compression")
    """,
    "still-loads": """
        # what the checks must keep accepting: np.savez and np.savez_compressed
        # files, big-endian members, float64 members for a float32 module
        m = fastrnn.LSTM(3, 4, num_layers=2, bidirectional=True, seed=0)
        x = np.random.default_rng(0).standard_normal((5, 2, 3)).astype(np.float32)
        for compress in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            for convert in (lambda a: a, lambda a: a.astype(">f4"), lambda a: a.astype(float)):
                members = {k + ".npy": npy_bytes(convert(v)) for k, v in m.state_dict().items()}
                write("ok.npz", {"__fastrnn__.npy": header(fastrnn.io.describe(m)), **members},
                      compress)
                loaded = fastrnn.load("ok.npz")
                assert np.array_equal(loaded(x)[0], m(x)[0])
        m.save("saved.npz")
        np.savez_compressed("compressed.npz", **dict(np.load("saved.npz")))
        assert np.array_equal(fastrnn.load("compressed.npz")(x)[0], m(x)[0])
        print("loads ok")
    """,
}


@pytest.mark.parametrize("case", list(CASES))
def test_crafted_model_files(case, tmp_path):
    code = CRAFT + f"import os\nos.chdir({str(tmp_path)!r})\n" + textwrap.dedent(CASES[case])
    out = run_isolated(code, timeout=120, memory=1 << 30).stdout
    assert "refused" in out or "loads ok" in out, out
