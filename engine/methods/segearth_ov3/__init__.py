"""SegEarth-OV3: open-vocabulary land cover from SAM 3's promptable concept segmentation."""
