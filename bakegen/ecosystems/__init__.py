"""One module per ecosystem, each with an ``ECOSYSTEM`` object; :mod:`bakegen.registry` lists them
in order."""
