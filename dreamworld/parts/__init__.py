"""The pipeline by parts: its stages run one at a time, their state kept in float TIFF files.

tiff.py reads and writes the files (tifffile's shaped layout: the array's shape and our description in one
JSON ImageDescription, which also reads the files of StableDiffusion-By-Parts); stages.py runs a stage
through the controller and the loaded backend, whose generate is the same stages in order.
"""
