"""Deployment files for a topology: a compose file (`render compose`) and
Kubernetes manifests (`render k8s`). Both run the same image and the same
command line as a local run; only where the processes and brokers are changes."""
