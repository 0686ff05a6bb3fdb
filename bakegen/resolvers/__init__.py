"""One resolver module per ecosystem, each behind a narrow domain interface.

* :mod:`bakegen.resolvers.python`: Python requirements -> hashed pins.
"""
