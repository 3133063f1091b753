"""Fused Triton kernels and their PyTorch references (see README.md). Importing this
package imports neither torch nor triton; the kernel modules do."""
