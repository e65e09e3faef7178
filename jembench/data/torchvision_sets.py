"""CIFAR-10, CIFAR-100, SVHN and CelebA through torchvision (registered in the dataset registry)."""
