"""Selection and tracking quality on the COCO dev set (make eval, make eval-track); not installed."""
