"""The command line: ``python -m fastrnn {demo,train,generate,quantize,predict,bench,info}``.

    python -m fastrnn demo                       # train a DNA motif finder, report speed
    python -m fastrnn train book.txt -o lm.npz   # character language model from a text file
    python -m fastrnn generate lm.npz --prefix "The " --length 300
    python -m fastrnn predict model.npz seqs.txt [--scheduler tcp://host:8786]
    python -m fastrnn bench [--only NAME,...]    # the comparison table (source checkout)
    python -m fastrnn info                       # build, kernels, threads, BLAS

A user error (a missing file, a bad option, a file that is not a model)
prints one line ``fastrnn: error: ...`` and exits with status 1 (2 for
options argparse refuses); FASTRNN_DEBUG=1 shows the traceback instead.
"""
import argparse
import os
import sys
import time

import numpy as np

from fastrnn.quantization import FORMATS as _WEIGHT_FORMATS


class UserError(Exception):
    """A problem with what the user asked for: reported in one line."""


class OneLineParser(argparse.ArgumentParser):
    """argparse, with a refused option reported in one line (not the usage block)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _integer_at_least(minimum):
    """An argparse type: an integer >= minimum."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {value}")
        return value
    return parse


_positive_int = _integer_at_least(1)
_seed = _integer_at_least(0)


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text}")
    return value


def _check_output(path, option):
    """Refuse an output path that cannot be written before any work is done."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise UserError(f"{option} {path} is a directory, not a file")
    if not os.path.isdir(folder):
        raise UserError(f"{option} {path}: no such directory {folder}")
    if not os.access(folder, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise UserError(f"{option} {path}: not writable")


def _threads(args):
    import fastrnn
    if args.threads is not None:
        fastrnn.set_num_threads(args.threads)


# -- demo -------------------------------------------------------------------------------
def demo(args):
    """Train a classifier to find a motif in DNA strings; print accuracy and speed."""
    import fastrnn
    from fastrnn.datasets import dna_motif
    from fastrnn.models import SequenceClassifier

    _threads(args)
    if args.save:
        _check_output(args.save, "--save")
    print(f"Task: does a DNA string (20-60 bases over ATCG) contain the motif {args.motif}?")
    X, y = dna_motif(args.samples, motif=args.motif, seed=args.seed)
    X_test, y_test = dna_motif(1000, motif=args.motif, seed=args.seed + 1)
    split = int(0.9 * len(X))
    model = SequenceClassifier(vocab=fastrnn.data.Vocabulary("ATCG"), cell=args.cell,
                               hidden_size=args.hidden_size, seed=args.seed)
    print(f"Model: {model}")
    print(f"Training on {split} strings, validating on {len(X) - split}, "
          f"{fastrnn.get_num_threads()} threads")
    start = time.perf_counter()
    model.fit(X[:split], y[:split], epochs=args.epochs, batch_size=32, lr=args.lr,
              validation_data=(X[split:], y[split:]), verbose=not args.quiet, seed=args.seed)
    train_seconds = time.perf_counter() - start
    accuracy = model.evaluate(X_test, y_test)["accuracy"]
    model.predict(X_test[:64])                          # warm up the threads
    start = time.perf_counter()
    model.predict(X_test, batch_size=256)
    infer_seconds = time.perf_counter() - start
    print(f"Test accuracy: {accuracy:.4f} on {len(X_test)} new strings")
    print(f"Training time: {train_seconds:.2f} s ({args.epochs} epochs)")
    print(f"Inference: {len(X_test) / infer_seconds:,.0f} strings/s "
          f"(batches of 256, {sum(map(len, X_test)) / infer_seconds:,.0f} bases/s)")
    for s, p in zip(X_test[:3], model.predict_proba(X_test[:3])):
        print(f"  {s:<60}  P(motif) = {p[1]:.3f}")
    if args.save:
        model.save(args.save)
        print(f"Saved to {args.save}")


# -- train / generate -----------------------------------------------------------------------
def _read_text(path):
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        raise UserError(f"no such file: {path}") from None
    except UnicodeDecodeError:
        raise UserError(f"{path} is not UTF-8 text") from None
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from None


def train(args):
    """Train a character language model on a text file and save it."""
    import fastrnn
    from fastrnn.models import LanguageModel

    _threads(args)
    _check_output(args.output, "--output")
    if not 0 < args.validation < 1:
        raise UserError(f"--validation must be a fraction in (0, 1), got {args.validation}")
    text = _read_text(args.text)
    if len(text) < 2 * args.seq_len + 2:
        raise UserError(f"{args.text} holds {len(text)} characters; training with --seq-len "
                        f"{args.seq_len} needs at least {2 * args.seq_len + 2}")
    held_out = max(args.seq_len + 1, int(len(text) * args.validation))
    train_text, val_text = text[:-held_out], text[-held_out:]
    vocab = fastrnn.data.Vocabulary.from_text(text)
    model = LanguageModel(vocab, cell=args.cell, hidden_size=args.hidden_size,
                          num_layers=args.layers, dropout=args.dropout, seed=args.seed)
    print(f"{len(train_text):,} characters for training, {len(val_text):,} for validation, "
          f"{len(vocab)} distinct symbols")
    print(f"Model: {model}")
    start = time.perf_counter()
    history = model.fit(train_text, seq_len=args.seq_len, epochs=args.epochs,
                        batch_size=args.batch_size, lr=args.lr, validation_data=val_text,
                        verbose=not args.quiet, patience=args.patience, seed=args.seed)
    seconds = time.perf_counter() - start
    model.save(args.output)
    best = int(np.argmin(history["val_loss"]))
    print(f"Trained {len(history['loss'])} epochs in {seconds:.1f} s; validation loss "
          f"{history['val_loss'][best]:.4f} (perplexity {np.exp(history['val_loss'][best]):.2f}),"
          f" accuracy {history['val_accuracy'][best]:.4f}")
    print(f"Saved to {args.output}")
    print(f"Sample: {model.generate(text[:1], 80, temperature=0.8, seed=args.seed)!r}")


def _load_model(path, kind):
    import fastrnn
    if not os.path.exists(path):
        raise UserError(f"no such file: {path}")
    model = fastrnn.load(path)
    if type(model).__name__ != kind:
        raise UserError(f"{path} holds a {type(model).__name__}, not a {kind}")
    return model


def generate(args):
    """Print text sampled from a saved LanguageModel."""
    _threads(args)
    model = _load_model(args.model, "LanguageModel")
    prefix = args.prefix if args.prefix is not None else model.vocab[0]
    missing = sorted({s for s in prefix if s not in model.vocab})
    if missing and model.vocab.unknown is None:
        raise UserError(f"--prefix holds symbols the model does not know: {missing}")
    if args.weights is not None and model._inference_only != args.weights:
        import fastrnn
        model = fastrnn.quantize(model, args.weights)
    text = model.generate(prefix, args.length, temperature=args.temperature, seed=args.seed)
    print(prefix + (text if isinstance(text, str) else " ".join(map(str, text))))


def quantize(args):
    """Write a model file with reduced-precision weights (fastrnn.quantize)."""
    import fastrnn
    if not os.path.exists(args.model):
        raise UserError(f"no such file: {args.model}")
    model = fastrnn.load(args.model)
    if model._inference_only:
        raise UserError(f"{args.model} is already quantized ({model._inference_only}); "
                        f"quantize the float model")
    fastrnn.quantize(model, args.weights).save(args.output)
    before, after = os.path.getsize(args.model), os.path.getsize(args.output)
    print(f"Saved {type(model).__name__} with {args.weights} weights to {args.output} "
          f"({after} bytes, {after / before:.2f} of {args.model})")


# -- predict ----------------------------------------------------------------------------------
_PREDICTORS = ("SequenceClassifier", "SequenceTagger", "Seq2Seq", "LanguageModel")


def _input_of(model):
    """(how a line becomes a sequence, the SequenceInput or vocabulary) of a model."""
    kind = type(model).__name__
    if kind == "LanguageModel":
        return model.vocab
    inp = model.source if kind == "Seq2Seq" else model.input
    if inp.vocab is None and not inp.tokens:
        raise UserError(f"a {kind} on float features (input_size) reads no text lines; "
                        f"predict takes token models")
    return inp.vocab


def _line_sequence(line, vocab):
    """A text line as a sequence: its symbols (a model with a vocabulary of
    one-character symbols), else whitespace-separated symbols or token ids."""
    if vocab is not None and all(isinstance(s, str) and len(s) == 1 for s in vocab):
        return line
    words = line.split()
    if vocab is not None:
        return words
    try:
        return np.array([int(w) for w in words], dtype=np.intp)
    except ValueError:
        raise ValueError(f"expected whitespace-separated token ids, got {line[:40]!r}") \
            from None


def _result_line(model, result):
    """One result as a text line: a class or the next symbol; tags, or output
    tokens, space-separated (symbols where the model has a vocabulary)."""
    kind = type(model).__name__
    if kind == "SequenceClassifier":
        return str(int(result))
    if kind == "LanguageModel":
        return str(result)
    vocab = model.target.vocab if kind == "Seq2Seq" else None
    items = [vocab[int(t)] if vocab is not None else int(t) for t in result]
    return " ".join(map(str, items))


def predict(args):
    """Read one sequence per line, print one result per line (in order), on a
    Dask scheduler with --scheduler, else in this process."""
    import fastrnn
    if not os.path.exists(args.model):
        raise UserError(f"no such file: {args.model}")
    model = fastrnn.load(args.model)
    if type(model).__name__ not in _PREDICTORS:
        raise UserError(f"{args.model} holds a {type(model).__name__}; predict takes a "
                        f"{', '.join(_PREDICTORS[:-1])} or {_PREDICTORS[-1]}")
    vocab = _input_of(model)
    if args.input != "-" and not os.path.exists(args.input):
        raise UserError(f"no such file: {args.input}")
    with (sys.stdin if args.input == "-" else open(args.input, encoding="utf-8")) as f:
        lines = [line.rstrip("\r\n") for line in f]
    seqs = []
    for number, line in enumerate(lines, 1):
        try:
            seqs.append(_line_sequence(line, vocab))
        except ValueError as exc:
            raise UserError(f"line {number}: {exc}") from None
    if not seqs:
        raise UserError(f"{args.input} holds no lines")
    try:
        results = _predicted(model, seqs, args)
    except ValueError as exc:
        raise UserError(_line_named(str(exc))) from None
    out = sys.stdout if args.output is None else open(args.output, "w", encoding="utf-8")
    try:
        for result in results:
            out.write(_result_line(model, result) + "\n")
    finally:
        if out is not sys.stdout:
            out.close()


def _predicted(model, seqs, args):
    if args.scheduler is None:
        _threads(args)
        if type(model).__name__ == "LanguageModel":
            results = []
            for i, s in enumerate(seqs):
                try:
                    results.append(model.predict(s))
                except ValueError as exc:      # (name the line)
                    raise ValueError(f"data[{i}]: {exc}") from None
            return results
        try:
            # (predict batches by itself; its checks name X[i], i in all of seqs)
            return list(model.predict(seqs, batch_size=args.batch_size))
        except ValueError as exc:
            message = str(exc)
            raise ValueError("data" + message[1:] if message.startswith("X[") else message) \
                from None
    try:
        from distributed import Client

        import fastrnn.distributed
    except ImportError:
        raise UserError("--scheduler needs Dask: pip install 'fastrnn[dask]'") from None
    with Client(args.scheduler, timeout=args.timeout) as client:
        return fastrnn.distributed.predict(model, seqs, client=client,
                                           batch_size=args.batch_size,
                                           threads=args.threads or 1)


def _line_named(message):
    """An error about data[i] (0-based) as one about line i + 1."""
    if message.startswith("data[") and "]" in message:
        index = message[5:message.index("]")]
        if index.isdigit():
            return f"line {int(index) + 1}" + message[message.index("]") + 1:]
    return message


# -- bench / info -----------------------------------------------------------------------------
def bench(args, extra):
    """Run ``python -m bench.compare`` in the source checkout with the given
    options; returns its exit status."""
    import subprocess

    import fastrnn
    root = os.path.dirname(os.path.dirname(os.path.abspath(fastrnn.__file__)))
    if not os.path.exists(os.path.join(root, "bench", "compare.py")):
        raise UserError("bench needs fastrnn's source checkout (bench/compare.py next to the "
                        "fastrnn package); clone the repository and install it with pip -e")
    env = dict(os.environ, FASTRNN_BENCH_PROG="python -m fastrnn bench")
    if args.threads is not None:
        env["FASTRNN_BENCH_THREADS"] = str(args.threads)
    return subprocess.call([sys.executable, "-m", "bench.compare", *extra], cwd=root, env=env)


def info(args):
    import fastrnn
    print(f"fastrnn {fastrnn.__version__} (numpy {np.__version__})")
    _threads(args)
    fastrnn.show_config()


# -- the parser ---------------------------------------------------------------------------------
def parser():
    top = OneLineParser(
        prog="python -m fastrnn",
        description="fastrnn: fast CPU RNN/GRU/LSTM engine. Commands: demo, train, generate, "
                    "quantize, predict, bench, info; `python -m fastrnn COMMAND --help` for "
                    "each.")
    sub = top.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)

    def command(name, helptext):
        p = sub.add_parser(name, help=helptext, description=helptext)
        p.add_argument("--threads", type=_positive_int, default=None,
                       help="threads for fastrnn's kernels (default: all cores)")
        return p

    p = command("demo", "Train a small model to find a motif in DNA strings (built-in "
                        "synthetic data); print accuracy, training time and inference speed.")
    p.add_argument("--cell", choices=["rnn", "gru", "lstm"], default="gru")
    p.add_argument("--hidden-size", type=_positive_int, default=32)
    p.add_argument("--epochs", type=_positive_int, default=6)
    p.add_argument("--samples", type=_positive_int, default=4000,
                   help="training + validation strings (default 4000)")
    p.add_argument("--motif", default="TATA", help="the motif to find (over ATCG)")
    p.add_argument("--lr", type=_positive_float, default=1e-2)
    p.add_argument("--seed", type=_seed, default=0)
    p.add_argument("--save", metavar="PATH", help="save the trained model to PATH (.npz)")
    p.add_argument("--quiet", action="store_true", help="no progress display")

    p = command("train", "Train a character language model on a UTF-8 text file and save it.")
    p.add_argument("text", help="the training text file")
    p.add_argument("-o", "--output", default="lm.npz", help="model file (default lm.npz)")
    p.add_argument("--cell", choices=["rnn", "gru", "lstm"], default="lstm")
    p.add_argument("--hidden-size", type=_positive_int, default=128)
    p.add_argument("--layers", type=_positive_int, default=1)
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--seq-len", type=_positive_int, default=64,
                   help="characters per training window (default 64)")
    p.add_argument("--epochs", type=_positive_int, default=10)
    p.add_argument("--batch-size", type=_positive_int, default=32)
    p.add_argument("--lr", type=_positive_float, default=5e-3)
    p.add_argument("--validation", type=float, default=0.1,
                   help="fraction of the text held out for validation (default 0.1)")
    p.add_argument("--patience", type=_positive_int, default=None,
                   help="stop after this many epochs without a better validation loss")
    p.add_argument("--seed", type=_seed, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress display")

    p = command("generate", "Print text sampled from a language model saved by `train`.")
    p.add_argument("model", help="the model file")
    p.add_argument("--prefix", default=None, help="text to start from (default: the most "
                                                 "frequent symbol)")
    p.add_argument("--length", type=_positive_int, default=200,
                   help="symbols to generate (default 200)")
    p.add_argument("--temperature", type=float, default=0.8,
                   help="sampling temperature; 0 = always the most probable (default 0.8)")
    p.add_argument("--seed", type=_seed, default=None)
    p.add_argument("--weights", choices=list(_WEIGHT_FORMATS), default=None,
                   help="run with the weights in this format (fastrnn.quantize)")

    p = command("quantize", "Write an inference-only copy of a model file with reduced-"
                            "precision weights, or float32 ones packed once per process "
                            "(see fastrnn.quantize).")
    p.add_argument("model", help="the model file")
    p.add_argument("output", help="the file to write (.npz)")
    p.add_argument("--weights", choices=list(_WEIGHT_FORMATS), default="float16",
                   help="the format (default float16)")

    p = command("predict", "Run a saved classifier, tagger, seq2seq or language model over a "
                           "text file, one sequence per line, printing one result per line "
                           "(in order); on a Dask cluster with --scheduler.")
    p.add_argument("model", help="the model file")
    p.add_argument("input", help="the input file ('-': standard input)")
    p.add_argument("-o", "--output", default=None, help="write the results here (default: "
                                                        "standard output)")
    p.add_argument("--scheduler", metavar="ADDRESS", default=None,
                   help="a Dask scheduler (tcp://host:port); default: this process")
    p.add_argument("--batch-size", type=_positive_int, default=256,
                   help="sequences per task (default 256)")
    p.add_argument("--timeout", type=_positive_float, default=30,
                   help="seconds to wait for the scheduler (default 30)")

    command("bench", "Time fastrnn beside numpy, PyTorch and ONNX Runtime (those installed) "
                     "and print one table; options after `bench` go to bench.compare "
                     "(--only NAME,..., --rounds N, --markdown).")
    command("info", "Show fastrnn's build (OpenMP, kernels), threads and BLAS.")
    return top


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    top = parser()
    if argv[:1] == ["bench"]:               # bench passes its options through
        args, extra = top.parse_known_args(argv)
    else:
        args, extra = top.parse_args(argv), []
    if args.command is None:
        top.print_help(sys.stderr)
        return 2
    try:
        if args.command == "bench":
            return bench(args, extra)
        else:
            {"demo": demo, "train": train, "generate": generate, "quantize": quantize,
             "predict": predict, "info": info}[args.command](args)
    except KeyboardInterrupt:
        print("fastrnn: interrupted", file=sys.stderr)
        return 130
    except (UserError, ValueError, TypeError, OSError) as exc:
        if os.environ.get("FASTRNN_DEBUG"):
            raise
        print(f"fastrnn: error: {exc}", file=sys.stderr)
        return 1
    except MemoryError as exc:
        if os.environ.get("FASTRNN_DEBUG"):
            raise
        detail = f" ({exc})" if str(exc) else ""
        print(f"fastrnn: error: not enough memory for what was asked{detail}; try smaller "
              f"sizes", file=sys.stderr)
        return 1
    return 0
