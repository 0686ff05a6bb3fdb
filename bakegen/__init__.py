"""bakegen: lock Jupyter/data-science image stacks and compile them to docker buildx bake."""

__version__ = "0.1.0"
