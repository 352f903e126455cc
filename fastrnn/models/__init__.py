"""Ready-made models, the types of RNN: each a recurrent layer, a head, a
training loop (``fit``), ``evaluate``, ``predict`` and ``save``.

- SequenceClassifier: many-to-one (one class per sequence).
- SequenceTagger: many-to-many (one tag per step).
- Seq2Seq: encoder-decoder (a target sequence of its own length per source).
- LanguageModel: next symbol; one-to-many generation.

``model.save(path)`` writes weights, architecture and vocabulary to one .npz;
``fastrnn.load(path)`` gives the same model back.
"""
from fastrnn.models.language import LanguageModel
from fastrnn.models.seq2seq import Seq2Seq
from fastrnn.models.sequence import SequenceClassifier, SequenceTagger

__all__ = ["SequenceClassifier", "SequenceTagger", "Seq2Seq", "LanguageModel"]
