<?php
// compat/php/symfony.php COMMAND FROM TO CC BCC SUBJECT BODY: one Email through
// Symfony Mailer's SendmailTransport (Debian's php-symfony-mailer 5.4), with
// COMMAND as its sendmail command ("... -bs": SMTP on the process's pipes;
// "... -t": message on stdin). Prints {"ok", "debug" (the SMTP dialogue in -bs
// mode), "error"} as JSON.
require '/usr/share/php/Symfony/Component/Mailer/autoload.php';
require_once '/usr/share/php/Symfony/Component/Mime/autoload.php';

use Symfony\Component\Mailer\Transport\SendmailTransport;
use Symfony\Component\Mime\Email;

[, $cmd, $from, $to, $cc, $bcc, $subject, $body] = $argv;
$t = new SendmailTransport($cmd);
$e = (new Email())->from($from)->to($to)->subject($subject)->text($body);
if ($cc !== '') {
    $e->cc($cc);
}
if ($bcc !== '') {
    $e->bcc($bcc);
}
try {
    $sent = $t->send($e);
    $out = ["ok" => true, "debug" => $sent->getDebug(), "error" => ""];
} catch (\Throwable $x) {
    $out = ["ok" => false, "debug" => method_exists($x, 'getDebug') ? $x->getDebug() : "",
            "error" => get_class($x) . ": " . $x->getMessage()];
}
unset($t); // closes the -bs session (QUIT) before we print
echo json_encode($out), "\n";
