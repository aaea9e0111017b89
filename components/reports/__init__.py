"""Reports a person looks at: self-contained HTML (charts as inline SVG, images as data URIs),
sized for the Kubeflow UI's viewers."""
