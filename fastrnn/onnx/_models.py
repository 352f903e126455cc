"""The ready-made models (fastrnn.models) as ONNX graphs.

Every graph is batch-first and takes padded batches; token ids enter as int64
and become one-hot rows (Gather of an identity: the models feed ids straight
into the first layer, whose input size is the vocabulary).

- SequenceClassifier: ``input`` (B, T) ids or (B, T, I) floats, ``lengths``
  (B,) int32 -> ``logits``, ``probabilities`` (B, C).
- SequenceTagger: the same inputs -> ``logits``, ``probabilities`` (B, T, C)
  (steps past a sequence's length: the head applied to zeros).
- LanguageModel: ``input`` (B, T) ids, ``h0`` (and ``c0``) (L, B, H) (zeros to
  start) -> ``logits``, ``probabilities`` (B, T, V), ``h_n`` (``c_n``): run it
  on a prefix, then one step at a time with the states it returned.
- Seq2Seq: ``source`` (B, S) ids, ``source_lengths`` (B,) int32,
  ``decoder_input`` (B, T) ids (the first is <start> = tgt_vocab_size, then
  the target ids so far) -> ``logits``, ``probabilities`` (B, T, V + 1) (class
  V is <end>), the decoder's ``h_n`` (``c_n``). Greedy decoding: append the most
  probable id of the last step and run again until <end>.
"""
import numpy as np

from fastrnn.layers import LSTM
from fastrnn.models import LanguageModel, Seq2Seq, SequenceClassifier, SequenceTagger


def export_model(g, model):
    """Add ``model``'s graph to the graph builder ``g`` (fastrnn.onnx._export._Graph)."""
    from fastrnn.onnx import _export as ex
    if isinstance(model, (SequenceClassifier, SequenceTagger)):
        x = _model_input(g, "input", model.input.tokens, model.rnn.input_size)
        lens = g.input("lengths", ["B"], g.onnx.TensorProto.INT32)
        y, flat = ex._sequence(g, model.rnn, g.batch_major(x), False, lens, None)
        if isinstance(model, SequenceClassifier):
            logits = ex._dense(g, model.head, ex._top_state(g, model.rnn, flat))
            lead = ["B"]
        else:
            logits = ex._dense(g, model.head, g.batch_major(y))
            lead = ["B", "T"]
        _logits_outputs(g, logits, lead + [model.num_outputs])
    elif isinstance(model, LanguageModel):
        x = _model_input(g, "input", True, model.rnn.input_size)
        states = [g.input(n, [model.num_layers, "B", model.hidden_size])
                  for n in _state_names(model.rnn, "0")]
        y, flat = ex._sequence(g, model.rnn, g.batch_major(x), False, None, states)
        _logits_outputs(g, ex._dense(g, model.head, g.batch_major(y)),
                        ["B", "T", len(model.vocab)])
        for name, value in zip(_state_names(model.rnn, "_n"), flat):
            g.output(name, value, [model.num_layers, "B", model.hidden_size])
    elif isinstance(model, Seq2Seq):
        src = _model_input(g, "source", True, model.encoder.input_size, steps="S")
        lens = g.input("source_lengths", ["B"], g.onnx.TensorProto.INT32)
        dec = _model_input(g, "decoder_input", True, model.decoder.input_size)
        _, enc_states = ex._sequence(g, model.encoder, g.batch_major(src), False, lens, None)
        bridged = [_bridge(g, model, s) for s in enc_states]
        y, flat = ex._sequence(g, model.decoder, g.batch_major(dec), False, None, bridged)
        _logits_outputs(g, ex._dense(g, model.head, g.batch_major(y)),
                        ["B", "T", model.head.out_features])
        width = model.decoder.hidden_size
        for name, value in zip(_state_names(model.decoder, "_n"), flat):
            g.output(name, value, [model.num_layers, "B", width])
    else:
        raise TypeError(f"cannot export a {type(model).__name__}")


def _state_names(layer, suffix):
    return [f"h{suffix}", f"c{suffix}"] if isinstance(layer, LSTM) else [f"h{suffix}"]


def _model_input(g, name, tokens, width, steps="T"):
    """A batch-first model input: int64 ids made one-hot rows, or float rows;
    ``steps`` names its time axis (ONNX Runtime takes equal names for equal sizes)."""
    if not tokens:
        return g.input(name, ["B", steps, width])
    ids = g.ids_input(name, ["B", steps])
    return g.node("Gather", [g.weight("one_hot", np.eye(width)), ids], axis=0)


def _logits_outputs(g, logits, shape):
    g.output("logits", logits, shape)
    g.output("probabilities", g.node("Softmax", [logits], axis=-1), shape)


def _bridge(g, model, state):
    """Encoder h_n (L*D, B, H) -> decoder h0 (L, B, D*H), as Seq2Seq._bridge."""
    L, H = model.num_layers, model.hidden_size
    D = model.encoder.num_directions
    s = g.node("Reshape", [state, g.const("shape", np.array([L, D, -1, H], np.int64))])
    s = g.node("Transpose", [s], perm=[0, 2, 1, 3])
    return g.node("Reshape", [s, g.const("shape", np.array([0, 0, D * H], np.int64))])
