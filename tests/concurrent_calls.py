"""Run a test's work in several Python threads at once."""
import threading


def in_threads(call, count):
    """call(k) on ``count`` Python threads at once; the exceptions they
    raised (for the test to report, not swallowed)."""
    errors = []

    def work(k):
        try:
            call(k)
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors
