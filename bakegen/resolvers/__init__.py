"""One resolver module per ecosystem that resolves over the network, each behind a narrow interface.

* :mod:`bakegen.resolvers.python`: Python requirements -> hashed pins (uv, pip-tools), with the
  request and pin model in :mod:`bakegen.resolvers.pins`;
* :mod:`bakegen.resolvers.apt`: apt packages -> pins with sha256, from Debian's or Ubuntu's
  Packages indexes;
* :mod:`bakegen.resolvers.npm`: npm packages -> npm's package-lock.json;
* :mod:`bakegen.resolvers.image`: a base image reference -> its digests and its config's user.
"""
